// CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (R plane, G plane, B plane, 32x32 each).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/raw_images.h"

namespace ddpm {

// Loads data_batch_1.bin..data_batch_5.bin (split "train") or test_batch.bin (split "test") from `folder`.
// Throws DataError on any bad input.
RawImages load_cifar10(const std::string& folder, const std::string& split);

// Parses the bytes of a split's batch files, in order; names[i] names files[i] in messages, `source` is the
// data set's name. Every file's size is checked before anything is allocated. Throws DataError.
RawImages parse_cifar10(const std::vector<std::vector<uint8_t>>& files, const std::vector<std::string>& names,
                        const std::string& source);

// The files of a split, in order.
std::vector<std::string> cifar10_files(const std::string& folder, const std::string& split);

}  // namespace ddpm
