// improved-diffusion's resize/crop and PIL's channel conversions, on small images with hand-worked values.
#include <gtest/gtest.h>

#include "data/resize.h"

namespace {

using ddpm::HwcImage;

HwcImage gray(int64_t width, int64_t height, const std::function<int(int64_t, int64_t)>& value) {
  HwcImage image{width, height, 1, std::vector<uint8_t>(width * height)};
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) image.data[y * width + x] = static_cast<uint8_t>(value(x, y));
  }
  return image;
}

int at(const HwcImage& image, int64_t x, int64_t y, int64_t c = 0) {
  return image.data[(y * image.width + x) * image.channels + c];
}

TEST(BoxDownsample, AveragesTwoByTwoBlocksRounded) {
  const HwcImage image =
      gray(4, 2, [](int64_t x, int64_t y) { return std::vector<int>{0, 1, 10, 20, 2, 1, 30, 41}[y * 4 + x]; });
  const HwcImage half = ddpm::box_downsample_2x(image);
  ASSERT_EQ(half.width, 2);
  ASSERT_EQ(half.height, 1);
  EXPECT_EQ(at(half, 0, 0), 1);   // (0+1+2+1)/4 = 1
  EXPECT_EQ(at(half, 1, 0), 25);  // (10+20+30+41)/4 = 25.25
}

TEST(BoxDownsample, FloorsOddSizes) {
  const HwcImage half = ddpm::box_downsample_2x(gray(5, 7, [](int64_t, int64_t) { return 9; }));
  EXPECT_EQ(half.width, 2);
  EXPECT_EQ(half.height, 3);
}

TEST(ResizeBicubic, MatchesTheKeysKernelByHand) {
  // Upscaling [0, 255] to 4: output x samples at (x + 0.5) / 2 - 0.5; with a = -0.5 the normalized weights
  // give 255 * k(0.75) / (k(0.25) + k(0.75)) = 52.8 → 53 for x = 1, and the clamped -22.5 → 0 for x = 0.
  const HwcImage image = gray(2, 1, [](int64_t x, int64_t) { return x == 0 ? 0 : 255; });
  const HwcImage up = ddpm::resize_bicubic(image, 4, 1);
  ASSERT_EQ(up.width, 4);
  EXPECT_EQ(at(up, 0, 0), 0);
  EXPECT_EQ(at(up, 1, 0), 53);
  EXPECT_EQ(at(up, 2, 0), 202);
  EXPECT_EQ(at(up, 3, 0), 255);
}

TEST(ResizeCenterCrop, KeepsConstantImagesConstant) {
  const HwcImage out = ddpm::resize_center_crop(gray(37, 23, [](int64_t, int64_t) { return 77; }), 16);
  ASSERT_EQ(out.width, 16);
  ASSERT_EQ(out.height, 16);
  for (uint8_t v : out.data) ASSERT_EQ(v, 77);
}

TEST(ResizeCenterCrop, BoxHalvesWhileTheShortSideIsAtLeastTwiceTheSize) {
  // 8x8 → 4x4 → 2x2 by box steps alone, then nothing left to resize: each output is its 4x4 block's value.
  const HwcImage image = gray(8, 8, [](int64_t x, int64_t y) { return 40 * (x / 4) + 100 * (y / 4); });
  const HwcImage out = ddpm::resize_center_crop(image, 2);
  ASSERT_EQ(out.width, 2);
  EXPECT_EQ(at(out, 0, 0), 0);
  EXPECT_EQ(at(out, 1, 0), 40);
  EXPECT_EQ(at(out, 0, 1), 100);
  EXPECT_EQ(at(out, 1, 1), 140);
}

TEST(ResizeCenterCrop, CropsTheCenterOfTheLongSide) {
  // 24x8 at size 8: no box step (8 < 16), scale 1, crop at x = (24 - 8) / 2 = 8: columns 8..15, the last four of
  // which are on the bright half.
  const HwcImage image = gray(24, 8, [](int64_t x, int64_t) { return x < 12 ? 0 : 255; });
  const HwcImage out = ddpm::resize_center_crop(image, 8);
  ASSERT_EQ(out.width, 8);
  ASSERT_EQ(out.height, 8);
  for (int64_t y = 0; y < 8; ++y) {
    for (int64_t x = 0; x < 8; ++x) EXPECT_EQ(at(out, x, y), x < 4 ? 0 : 255) << x << "," << y;
  }
}

TEST(ResizeCenterCrop, ShrinksNonSquareImagesMonotonically) {
  // 40x20 at 8: one box step to 20x10, bicubic to 16x8 (scale 0.8), crop columns 4..11.
  const HwcImage image = gray(40, 20, [](int64_t x, int64_t) { return static_cast<int>(x * 6); });
  const HwcImage out = ddpm::resize_center_crop(image, 8);
  ASSERT_EQ(out.width, 8);
  for (int64_t x = 1; x < 8; ++x) EXPECT_GT(at(out, x, 3), at(out, x - 1, 3));
  // Column x of the crop is column x + 4 of the 16-wide image, centered at 40 * (x + 4.5) / 16 of the original.
  EXPECT_NEAR(at(out, 0, 3), 6 * (40.0 * 4.5 / 16 - 0.5), 3.0);
}

TEST(ConvertChannels, ReplicatesGrayAndUsesPilLuma) {
  const HwcImage g = gray(2, 1, [](int64_t x, int64_t) { return x == 0 ? 12 : 200; });
  const HwcImage rgb = ddpm::convert_channels(g, 3);
  ASSERT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.data, (std::vector<uint8_t>{12, 12, 12, 200, 200, 200}));

  const HwcImage colors{4, 1, 3, {255, 0, 0, 0, 255, 0, 0, 0, 255, 100, 150, 200}};
  const HwcImage luma = ddpm::convert_channels(colors, 1);
  // R*299/1000 + G*587/1000 + B*114/1000 rounded: 76.2, 149.7, 29.1, 140.75.
  EXPECT_EQ(luma.data, (std::vector<uint8_t>{76, 150, 29, 141}));
}

TEST(ConvertChannels, DropsAlpha) {
  const HwcImage rgba{1, 1, 4, {10, 20, 30, 0}};
  EXPECT_EQ(ddpm::convert_channels(rgba, 3).data, (std::vector<uint8_t>{10, 20, 30}));
  const HwcImage gray_alpha{1, 1, 2, {99, 7}};
  EXPECT_EQ(ddpm::convert_channels(gray_alpha, 1).data, (std::vector<uint8_t>{99}));
}

}  // namespace
