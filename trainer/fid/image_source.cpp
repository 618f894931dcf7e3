#include "trainer/fid/image_source.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "data/image_folder.h"
#include "data/resize.h"
#include "trainer/fid/describe.h"

namespace ddpm {
namespace {

torch::Tensor index_tensor(const std::vector<int64_t>& indices) {
  return torch::tensor(indices, torch::kInt64);
}

class NpzImages final : public ImageSource {
 public:
  NpzImages(std::shared_ptr<const std::map<std::string, NpyArray>> arrays, std::string path)
      : arrays_(std::move(arrays)), path_(std::move(path)) {
    const auto found = arrays_->find("arr_0");
    if (found != arrays_->end()) {
      key_ = "arr_0";
    } else if (arrays_->size() == 1) {
      key_ = arrays_->begin()->first;
    } else {
      std::string names;
      for (const auto& [name, array] : *arrays_) names += (names.empty() ? "" : ", ") + name;
      throw std::runtime_error(path_ + ": no array 'arr_0' of images (the archive holds " +
                               (names.empty() ? std::string("no arrays") : names) + ")");
    }
    const NpyArray& array = arrays_->at(key_);
    const std::vector<int64_t>& s = array.shape;
    if (array.dtype != NpyDtype::kUint8 || s.size() != 4 || (s[3] != 1 && s[3] != 3) || s[1] == 0 || s[2] == 0) {
      throw std::runtime_error(path_ + ": '" + key_ + "' is " + npy_dtype_name(array.dtype) + " " + shape_text(s) +
                               ", expected uint8 images [N, H, W, C] with C = 1 or 3");
    }
    // A view of the archive's bytes as NHWC, without a copy; the archive outlives it (arrays_).
    nhwc_ = torch::from_blob(const_cast<uint8_t*>(array.bytes.data()), s, torch::kUInt8);
  }

  int64_t size() const override { return nhwc_.size(0); }

  torch::Tensor read(const std::vector<int64_t>& indices) const override {
    return nhwc_.index_select(0, index_tensor(indices)).permute({0, 3, 1, 2}).contiguous();
  }

  std::string description() const override {
    return path_ + " (" + key_ + ": " + std::to_string(nhwc_.size(0)) + " images " + std::to_string(nhwc_.size(1)) +
           "x" + std::to_string(nhwc_.size(2)) + "x" + std::to_string(nhwc_.size(3)) + ")";
  }
  std::string name() const override { return path_; }

 private:
  std::shared_ptr<const std::map<std::string, NpyArray>> arrays_;
  std::string path_;
  std::string key_;
  torch::Tensor nhwc_;
};

class FolderImages final : public ImageSource {
 public:
  explicit FolderImages(std::string folder) : folder_(std::move(folder)), files_(list_image_files(folder_)) {
    const HwcImage first = decode_image_file(files_.front());
    width_ = first.width;
    height_ = first.height;
  }

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }

  torch::Tensor read(const std::vector<int64_t>& indices) const override {
    const auto n = static_cast<int64_t>(indices.size());
    torch::Tensor out = torch::empty({n, 3, height_, width_}, torch::kUInt8);
    const int64_t plane = height_ * width_;
    for (int64_t k = 0; k < n; ++k) {
      const std::string& file = files_.at(static_cast<size_t>(indices[static_cast<size_t>(k)]));
      const HwcImage image = convert_channels(decode_image_file(file), 3);
      if (image.width != width_ || image.height != height_) {
        throw std::runtime_error(file + " is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                 " pixels, but " + files_.front() + " (the first image of " + folder_ + ") is " +
                                 std::to_string(width_) + "x" + std::to_string(height_) +
                                 ": FID statistics take images of one size (resize them first, as the sampler "
                                 "wrote them)");
      }
      uint8_t* dst = out[k].data_ptr<uint8_t>();
      for (int64_t p = 0; p < plane; ++p) {
        for (int64_t c = 0; c < 3; ++c) dst[c * plane + p] = image.data[static_cast<size_t>(p * 3 + c)];
      }
    }
    return out;
  }

  std::string description() const override {
    return folder_ + " (" + std::to_string(files_.size()) + " images " + std::to_string(width_) + "x" +
           std::to_string(height_) + ")";
  }
  std::string name() const override { return folder_; }

 private:
  std::string folder_;
  std::vector<std::string> files_;
  int64_t width_ = 0;
  int64_t height_ = 0;
};

class DatasetImages final : public ImageSource {
 public:
  explicit DatasetImages(ImageDataset dataset) : dataset_(std::move(dataset)) {}
  int64_t size() const override { return dataset_.size(); }
  torch::Tensor read(const std::vector<int64_t>& indices) const override {
    return dataset_.images.index_select(0, index_tensor(indices)).contiguous();
  }
  std::string description() const override {
    return dataset_.source + " (" + std::to_string(dataset_.size()) + " images " + std::to_string(dataset_.height()) +
           "x" + std::to_string(dataset_.width()) + "x" + std::to_string(dataset_.channels()) + ")";
  }
  std::string name() const override { return dataset_.source; }

 private:
  ImageDataset dataset_;
};

}  // namespace

std::unique_ptr<ImageSource> npz_image_source(std::shared_ptr<const std::map<std::string, NpyArray>> arrays,
                                              const std::string& path) {
  return std::make_unique<NpzImages>(std::move(arrays), path);
}

std::unique_ptr<ImageSource> folder_image_source(const std::string& folder) {
  return std::make_unique<FolderImages>(folder);
}

std::unique_ptr<ImageSource> dataset_image_source(ImageDataset dataset) {
  return std::make_unique<DatasetImages>(std::move(dataset));
}

}  // namespace ddpm
