// What to load, filled by the trainer from its config (the data library does not see the config).
#pragma once
#include <cstdint>
#include <string>

#include "data/image_dataset.h"

namespace ddpm {

struct DatasetSpec {
  std::string format = "idx";  // idx | cifar10 | folder
  std::string path;            // the folder holding the files (or the images, for folder)
  std::string split = "train";  // train | test; ignored for folder
  int64_t image_size = 28;
  int64_t channels = 1;  // 1 | 3
};

// Opens, decodes and checks the whole data set. Throws DataError on any bad input.
ImageDataset load_dataset(const DatasetSpec& spec);

// Throws DataError unless `dataset` holds image_size x image_size images with `channels` channels.
void check_dataset_shape(const ImageDataset& dataset, int64_t image_size, int64_t channels);

}  // namespace ddpm
