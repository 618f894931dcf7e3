// A folder of PNG/JPEG images (any depth), decoded with stb_image and brought to image_size x image_size.
#pragma once
#include <string>
#include <vector>

#include "data/image_dataset.h"
#include "data/resize.h"

namespace ddpm {

// Every .png/.jpg/.jpeg (any case) under `folder`, recursively, sorted by path so that indices are stable.
std::vector<std::string> list_image_files(const std::string& folder);

// Decodes one file to 1 (gray) or 3 (RGB) channels, alpha dropped. Throws DataError naming the file.
HwcImage decode_image_file(const std::string& path);

// Decodes, resizes and center-crops every image (resize_center_crop), converted to `channels`; labels are -1.
// Throws DataError for a missing or empty folder and for any unreadable image.
ImageDataset load_image_folder(const std::string& folder, int64_t image_size, int64_t channels);

}  // namespace ddpm
