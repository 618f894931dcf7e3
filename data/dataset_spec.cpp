#include "data/dataset_spec.h"

#include "data/cifar10.h"
#include "data/data_error.h"
#include "data/idx.h"
#include "data/image_folder.h"

namespace ddpm {

ImageDataset load_dataset(const DatasetSpec& spec) {
  if (spec.channels != 1 && spec.channels != 3) {
    throw DataError("data set " + spec.path + ": channels must be 1 or 3, got " + std::to_string(spec.channels));
  }
  if (spec.image_size < 1) {
    throw DataError("data set " + spec.path + ": image_size must be positive, got " +
                    std::to_string(spec.image_size));
  }
  ImageDataset dataset;
  if (spec.format == "idx") {
    dataset = to_image_dataset(load_idx(spec.path, spec.split));
  } else if (spec.format == "cifar10") {
    dataset = to_image_dataset(load_cifar10(spec.path, spec.split));
  } else if (spec.format == "folder") {
    dataset = to_image_dataset(load_image_folder(spec.path, spec.image_size, spec.channels));
  } else {
    throw DataError("unknown data format '" + spec.format + "' (expected idx, cifar10 or folder)");
  }
  check_dataset_shape(dataset, spec.image_size, spec.channels);
  return dataset;
}

void check_dataset_shape(const ImageDataset& dataset, int64_t image_size, int64_t channels) {
  if (dataset.height() != image_size || dataset.width() != image_size || dataset.channels() != channels) {
    throw DataError(dataset.source + " holds " + std::to_string(dataset.height()) + "x" +
                    std::to_string(dataset.width()) + " images with " + std::to_string(dataset.channels()) +
                    " channel(s), but the config asks for image_size " + std::to_string(image_size) +
                    " and channels " + std::to_string(channels));
  }
}

}  // namespace ddpm
