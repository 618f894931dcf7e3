// The feature network of FID: a TorchScript module (launch/fid/export_inception.py writes pytorch-fid's Inception
// as one), run on uint8 images batch by batch. Its documented input is float32 [N, 3, H, W] with values in
// [0, 255]; it resizes and scales by itself (to 299 × 299 and [-1, 1], as pytorch-fid does) and returns [N, D].
#pragma once
#include <torch/script.h>
#include <torch/torch.h>

#include <string>

namespace ddpm {

class InceptionNetwork {
 public:
  // Loads `path` onto `device`. Throws std::runtime_error naming the file when it is missing, not a TorchScript
  // file, or has no forward method.
  InceptionNetwork(const std::string& path, const torch::Device& device);

  // uint8 [N, C, H, W] with C = 1 or 3 (any device) → float [N, D] on the network's device. Gray images are
  // repeated to 3 channels, as pytorch-fid's ImagePathDataset does (PIL convert('RGB')). Throws naming the file
  // when the module fails on the batch or returns anything but a floating tensor [N, D].
  torch::Tensor activations(const torch::Tensor& images);

  const std::string& path() const { return path_; }
  const torch::Device& device() const { return device_; }

 private:
  std::string path_;
  torch::Device device_;
  torch::jit::script::Module module_;
};

}  // namespace ddpm
