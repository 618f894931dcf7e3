// The resize and center crop of improved-diffusion's ImageDataset (which uses PIL), reproduced on uint8 HWC images.
#pragma once
#include <cstdint>
#include <vector>

namespace ddpm {

// An interleaved uint8 image: pixel (y, x) channel c at data[(y * width + x) * channels + c].
struct HwcImage {
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 0;
  std::vector<uint8_t> data;
};

// Halves both sides (floor), each output pixel the rounded mean of its 2x2 block.
HwcImage box_downsample_2x(const HwcImage& image);

// Resamples to width x height with PIL's bicubic filter (Keys, a = -0.5, widened by the scale factor when
// shrinking), horizontal pass first, each pass rounded and clamped to uint8 as PIL does.
HwcImage resize_bicubic(const HwcImage& image, int64_t width, int64_t height);

// The size x size crop at ((width - size) / 2, (height - size) / 2).
HwcImage center_crop(const HwcImage& image, int64_t size);

// improved-diffusion's recipe: box-halve while min(w, h) >= 2 * size, bicubic-resize so that the short side is
// `size` (long side rounded half to even, as Python's round), then center crop.
HwcImage resize_center_crop(HwcImage image, int64_t size);

// 1 → 3 replicates gray; 3 → 1 is PIL's "L" luma, R*299/1000 + G*587/1000 + B*114/1000 rounded to nearest;
// an alpha channel (2 or 4 channels in) is dropped.
HwcImage convert_channels(const HwcImage& image, int64_t channels);

}  // namespace ddpm
