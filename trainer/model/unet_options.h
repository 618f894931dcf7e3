// The shape of the DDPM U-Net (unet.h). Torch-free: the config's model section is a UNetArchitecture, so each of
// its keys is declared once (its default and check are the config's row, trainer/config/config.cpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace ddpm {

// Width and depth: the config's model section.
struct UNetArchitecture {
  int64_t channels = 0;                        // base width; level l has channels · channel_mult[l]
  std::vector<int64_t> channel_mult;           // one entry per resolution level
  int64_t num_res_blocks = 0;                  // residual blocks per level (the decoder has one more)
  std::vector<int64_t> attention_resolutions;  // the resolutions (sides) that get self-attention
  // The stride-2 downsampling convolution's padding: 1 on every side (improved-diffusion's; every build before the
  // key), or 0: none before and one after (Ho et al.'s TF 'SAME' with stride 2, diffusers' downsample_padding=0).
  int64_t downsample_padding = 1;
  double dropout = 0.0;
};

// The whole network: its architecture and the images it maps (from the config's data section).
struct UNetOptions : UNetArchitecture {
  int64_t image_size = 0;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
};

// Whether the blocks at `resolution` (a side in pixels) have self-attention.
inline bool has_attention(const UNetArchitecture& architecture, int64_t resolution) {
  return std::find(architecture.attention_resolutions.begin(), architecture.attention_resolutions.end(), resolution) !=
         architecture.attention_resolutions.end();
}

// Ho et al.'s CIFAR-10 network (35,746,307 parameters): ch 128, mult (1, 2, 2, 2), 2 residual blocks per level,
// attention at 16x16, their 'SAME' downsampling padding, dropout 0.1, on 32x32x3 images.
inline UNetOptions ddpm_cifar10_unet() {
  UNetOptions options;
  options.channels = 128;
  options.channel_mult = {1, 2, 2, 2};
  options.num_res_blocks = 2;
  options.attention_resolutions = {16};
  options.downsample_padding = 0;
  options.dropout = 0.1;
  options.image_size = 32;
  options.in_channels = options.out_channels = 3;
  return options;
}

}  // namespace ddpm
