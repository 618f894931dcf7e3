// CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (R plane, G plane, B plane, 32x32 each).
#pragma once
#include <string>
#include <vector>

#include "data/image_dataset.h"

namespace ddpm {

// Loads data_batch_1.bin..data_batch_5.bin (split "train") or test_batch.bin (split "test") from `folder`.
// Throws DataError on any bad input.
ImageDataset load_cifar10(const std::string& folder, const std::string& split);

// The files of a split, in order.
std::vector<std::string> cifar10_files(const std::string& folder, const std::string& split);

}  // namespace ddpm
