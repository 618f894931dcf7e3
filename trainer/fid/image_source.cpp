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
  explicit NpzImages(std::shared_ptr<const NpzFile> file) : file_(std::move(file)) {
    const std::string& path = file_->path();
    const std::vector<std::string> names = file_->names();
    if (file_->contains("arr_0")) {
      key_ = "arr_0";
    } else if (names.size() == 1) {
      key_ = names.front();
    } else {
      std::string listed;
      for (const std::string& name : names) listed += (listed.empty() ? "" : ", ") + name;
      throw std::runtime_error(path + ": no array 'arr_0' of images (the archive holds " +
                               (listed.empty() ? std::string("no arrays") : listed) + ")");
    }
    const NpyArrayInfo& array = file_->info(key_);
    shape_ = array.shape;
    const std::vector<int64_t>& s = shape_;
    if (array.dtype != NpyDtype::kUint8 || s.size() != 4 || (s[3] != 1 && s[3] != 3) || s[1] == 0 || s[2] == 0) {
      throw std::runtime_error(path + ": '" + key_ + "' is " + npy_dtype_name(array.dtype) + " " + shape_text(s) +
                               ", expected uint8 images [N, H, W, C] with C = 1 or 3");
    }
  }

  int64_t size() const override { return shape_[0]; }

  // Each image read from the file as asked (a rank holds its batch, not the archive).
  torch::Tensor read(const std::vector<int64_t>& indices) const override {
    const auto n = static_cast<int64_t>(indices.size());
    torch::Tensor nhwc = torch::empty({n, shape_[1], shape_[2], shape_[3]}, torch::kUInt8);
    const int64_t image_bytes = shape_[1] * shape_[2] * shape_[3];
    for (int64_t k = 0; k < n; ++k) {
      file_->read_rows(key_, indices[static_cast<size_t>(k)], 1, nhwc.data_ptr<uint8_t>() + k * image_bytes);
    }
    return nhwc.permute({0, 3, 1, 2}).contiguous();
  }

  std::string description() const override {
    return file_->path() + " (" + key_ + ": " + std::to_string(shape_[0]) + " images " + std::to_string(shape_[1]) +
           "x" + std::to_string(shape_[2]) + "x" + std::to_string(shape_[3]) + ")";
  }
  std::string name() const override { return file_->path(); }

 private:
  std::shared_ptr<const NpzFile> file_;
  std::string key_;
  std::vector<int64_t> shape_;
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

std::unique_ptr<ImageSource> npz_image_source(std::shared_ptr<const NpzFile> file) {
  return std::make_unique<NpzImages>(std::move(file));
}

std::unique_ptr<ImageSource> folder_image_source(const std::string& folder) {
  return std::make_unique<FolderImages>(folder);
}

std::unique_ptr<ImageSource> dataset_image_source(ImageDataset dataset) {
  return std::make_unique<DatasetImages>(std::move(dataset));
}

}  // namespace ddpm
