// Which data set files to read: their format and split, with the names the config uses (one list, read by the
// config loader for parsing, checking and printing). Torch-free: the config includes it.
#pragma once
#include <utility>

namespace ddpm {

enum class DataFormat {
  kIdx,      // MNIST-style IDX files (Fashion-MNIST), gzipped or not
  kCifar10,  // the CIFAR-10 binary batches
  kFolder,   // a folder of PNG/JPEG/BMP images
};
inline constexpr std::pair<DataFormat, const char*> kDataFormatNames[] = {
    {DataFormat::kIdx, "idx"}, {DataFormat::kCifar10, "cifar10"}, {DataFormat::kFolder, "folder"}};

enum class DataSplit { kTrain, kTest };  // a folder has one split
inline constexpr std::pair<DataSplit, const char*> kDataSplitNames[] = {{DataSplit::kTrain, "train"},
                                                                         {DataSplit::kTest, "test"}};

}  // namespace ddpm
