#pragma once

#include <torch/torch.h>

#include <vector>

#include "trainer/model/unet.h"

namespace ddpm {

// ε_θ(x_t, t) for inference on a CPU (float32, no autograd, eval mode): the function of UNetImpl::forward, equal
// up to float round-off, in far fewer and cheaper operator calls, for sampling's hundreds of model calls.
// Activations stay NHWC throughout; every convolution's weights are reordered once, when it is built, into
// oneDNN's blocked layout (the plain path reorders weights, inputs and outputs at every call) and the residual
// additions run inside the convolutions (oneDNN's sum post-op); group norm, the time embedding's addition before it
// and the SiLU after it are one pass over the activations; attention's q, k and v are one 1x1 convolution whose
// NHWC output the fused attention kernel reads as it is; the residual blocks' embedding projections are one matrix
// product, computed once per distinct timestep of the batch. An image's ε does not depend on the other images of
// its batch, bit for bit (the plain forward's does, in the last bits, through the matrix products' row count).
// It reads (and packs) the weights when built: build it after they last changed and use it while they do not (one sampling
// run). The model's parameters themselves are not touched.
class UNetInference {
 public:
  explicit UNetInference(UNet model);
  // A CPU with oneDNN (the only device it is for; on GPUs the plain forward is the fast path).
  static bool supported(const torch::Device& device);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) const;

  struct PackedConv {
    torch::Tensor weight;  // dense [O, I, k, k] float32 (undefined: no such convolution)
    torch::Tensor bias;
    torch::Tensor packed;  // the weight in oneDNN's layout (an MKLDNN tensor)
    int64_t padding = 0, stride = 1;
  };
  struct Block {
    torch::Tensor norm1_weight, norm1_bias, norm2_weight, norm2_bias;
    PackedConv conv1, conv2, skip;  // skip: undefined weight when the residual is the identity
    int64_t embedding_offset = 0, out_channels = 0;
  };
  struct Attention {
    torch::Tensor norm_weight, norm_bias;
    PackedConv qkv, proj_out;  // q, k and v's weights stacked: one [3C, C, 1, 1] convolution
  };

 private:
  // overwrite_x: x is held by nobody else, so its residual addition may be done into it. attention always may.
  torch::Tensor res_block(const Block& block, torch::Tensor x, const torch::Tensor& embeddings, bool overwrite_x) const;
  torch::Tensor attention(const Attention& block, torch::Tensor x) const;

  UNet model_;
  int64_t groups_ = 0;  // every group norm's (the model's are alike)
  double eps_ = 0.0;
  PackedConv conv_in_, conv_out_;
  std::vector<Block> down_, up_;
  std::vector<Attention> down_attention_, up_attention_;  // an undefined qkv weight: no attention there
  std::vector<PackedConv> downsamples_, upsamples_;
  Block mid1_, mid2_;
  Attention mid_attention_;
  torch::Tensor norm_out_weight_, norm_out_bias_;
  torch::Tensor time_fc1_weight_, time_fc1_bias_, time_fc2_weight_, time_fc2_bias_;
  torch::Tensor projection_weight_, projection_bias_;  // every block's embedding_proj, stacked
};

}  // namespace ddpm
