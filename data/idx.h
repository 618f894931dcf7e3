// The IDX files of MNIST and Fashion-MNIST: big-endian magic and dimensions, then uint8 pixels.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/raw_images.h"

namespace ddpm {

// Loads <folder>/train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] (split "train") or the
// t10k-... pair (split "test"). Gzip is detected by its magic bytes. Throws DataError on any bad input.
RawImages load_idx(const std::string& folder, const std::string& split);

// Parses the two files' (already inflated) bytes; the names are for messages. Throws DataError naming the
// file on any bad input.
RawImages parse_idx(const std::vector<uint8_t>& images, const std::string& images_name,
                    const std::vector<uint8_t>& labels, const std::string& labels_name);

}  // namespace ddpm
