// The DDPM U-Net of Ho et al. 2020 (Appendix B; the reference `diffusion_tf/models/unet.py`): a sinusoidal
// timestep embedding through an MLP, residual blocks (GroupNorm(32), Swish, dropout, the time embedding
// added between the two convolutions), self-attention at chosen resolutions, strided-conv downsampling,
// nearest + conv upsampling (the downsampling padding is the reference's or improved-diffusion's: UNetOptions).
// The output conv starts at zero, so a fresh model predicts ε = 0.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "trainer/model/unet_options.h"

namespace ddpm {

// Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as in the reference code: frequencies
// exp(-log(10000) i / (half - 1))), shape [B, dim].
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim);

// The input of a downsampling convolution: as it is (padding 1, inside the convolution), or with one row and column
// of zeros after (downsample_padding 0: the convolution pads nothing).
torch::Tensor pad_for_downsample(const torch::Tensor& x, const UNetOptions& options);

class UNetInference;

class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t in_channels, int64_t out_channels, int64_t embedding_channels, double dropout);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& embedding);
  int64_t forward_flops(int64_t side) const;  // one image at side × side (see UNetImpl::forward_flops)

 private:
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear embedding_proj_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Conv2d skip_{nullptr};  // 1x1 when the channel count changes
  friend class UNetInference;
};
TORCH_MODULE(ResBlock);

class AttentionBlockImpl : public torch::nn::Module {
 public:
  explicit AttentionBlockImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t forward_flops(int64_t side) const;

 private:
  torch::nn::GroupNorm norm_{nullptr};
  torch::nn::Conv2d q_{nullptr}, k_{nullptr}, v_{nullptr}, proj_out_{nullptr};
  friend class UNetInference;
};
TORCH_MODULE(AttentionBlock);

class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetOptions& options);
  // ε_θ(x_t, t): x [B, C, H, W], t [B] timestep indices → [B, C_out, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t);
  const UNetOptions& options() const { return options_; }
  int64_t parameter_count() const;
  // Floating-point operations of one forward pass of one image, counted from the layers' weight shapes and the
  // resolution each runs at: 2 per multiply-add of every convolution and linear layer, plus attention's two
  // matrix products (QKᵀ and AV, 4·(HW)²·C). Norms, activations and additions are not counted (the convention of
  // PyTorch's FlopCounterMode and of MFU figures). A training step costs about 3 times this per image.
  int64_t forward_flops() const;

 private:
  // One entry of the down or up path: a residual block with an optional attention block after it.
  struct Stage {
    ResBlock res{nullptr};
    AttentionBlock attention{nullptr};
  };

  UNetOptions options_;
  torch::nn::Linear time_fc1_{nullptr}, time_fc2_{nullptr};
  torch::nn::Conv2d conv_in_{nullptr};
  std::vector<Stage> down_stages_;
  std::vector<torch::nn::Conv2d> downsamples_;  // one per level but the last
  ResBlock mid_res1_{nullptr}, mid_res2_{nullptr};
  AttentionBlock mid_attention_{nullptr};
  std::vector<Stage> up_stages_;
  std::vector<torch::nn::Conv2d> upsamples_;  // one per level but the first
  torch::nn::GroupNorm norm_out_{nullptr};
  torch::nn::Conv2d conv_out_{nullptr};
  friend class UNetInference;
};
TORCH_MODULE(UNet);

// Puts the 4-d weights in channels-last (NHWC) memory format, in place: convolutions on NHWC inputs then
// run without layout conversions (tensor-core kernels on GPUs). Before any optimizer state is created.
void use_channels_last(UNet& model);

}  // namespace ddpm
