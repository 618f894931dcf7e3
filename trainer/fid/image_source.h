// Where the images of an FID statistics pass come from: an .npz of samples, a folder of PNG/JPEG files, or a data set
// already in memory. Read by index, so that each rank decodes only its own shard of a folder.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/image_dataset.h"
#include "data/npz.h"

namespace ddpm {

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  // uint8 [indices.size(), C, H, W] on the CPU, C = 1 or 3 and H, W the same on every call. Throws naming the file
  // for an image that cannot be decoded or differs in size.
  virtual torch::Tensor read(const std::vector<int64_t>& indices) const = 0;
  // "samples.npz (arr_0, 50000 images 64x64x3)", for messages and reports.
  virtual std::string description() const = 0;
  // The path or name the user gave.
  virtual std::string name() const = 0;
};

// Samples as guided-diffusion's evaluator reads them: `arr_0` uint8 [N, H, W, C] (C = 1 or 3), or the archive's
// only array when it has no `arr_0`. Throws std::runtime_error naming the file and the key otherwise. Images are
// read from the file as they are asked for (NpzFile): memory is a batch's, not the archive's.
std::unique_ptr<ImageSource> npz_image_source(std::shared_ptr<const NpzFile> file);

// Every .png/.jpg/.jpeg under `folder` (data/image_folder.h: recursive, sorted by path), decoded as they are read
// and converted to RGB (gray repeated, alpha dropped: PIL's convert('RGB'), as pytorch-fid does), never resized.
// All must have the size of the first one (sorted order): the first odd one met is an error naming it.
std::unique_ptr<ImageSource> folder_image_source(const std::string& folder);

// The images of a loaded data set (load_dataset), as the training config gives them (resized for folders).
std::unique_ptr<ImageSource> dataset_image_source(ImageDataset dataset);

}  // namespace ddpm
