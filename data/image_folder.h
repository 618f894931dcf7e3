// A folder of PNG/JPEG images (any depth), decoded with stb_image and brought to image_size x image_size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/raw_images.h"
#include "data/resize.h"

namespace ddpm {

// Every .png/.jpg/.jpeg (any case) under `folder`, recursively, sorted by path so that indices are stable.
std::vector<std::string> list_image_files(const std::string& folder);

// The largest image decoded (width x height; 16384 x 16384): a bigger one is refused before any pixel memory is
// allocated, so that a corrupt or hostile header cannot make the loader allocate gigabytes.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

// Decodes one file to 1 (gray) or 3 (RGB) channels, alpha dropped. Throws DataError naming the file.
HwcImage decode_image_file(const std::string& path);

// Decodes one image's bytes (as decode_image_file); `name` names it in messages. Only PNG and JPEG data is
// decoded (by content, not by name): stb_image would also take GIF, BMP, PSD, TGA, HDR, PIC and PNM data, whose
// decoders are neither wanted nor hardened. Throws DataError naming `name` for anything else, for an image of
// more than max_pixels pixels and for any decoding error.
HwcImage decode_image(const std::vector<uint8_t>& bytes, const std::string& name,
                      int64_t max_pixels = kMaxImagePixels);

// Decodes, resizes and center-crops every image (resize_center_crop), converted to `channels`; labels are -1.
// Throws DataError for a missing or empty folder and for any unreadable image.
RawImages load_image_folder(const std::string& folder, int64_t image_size, int64_t channels);

}  // namespace ddpm
