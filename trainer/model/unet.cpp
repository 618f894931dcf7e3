#include "trainer/model/unet.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ddpm {
namespace {

constexpr int64_t kGroups = 32;

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = -1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding < 0 ? kernel / 2 : padding));
}

torch::nn::GroupNorm group_norm(int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(kGroups, channels).eps(1e-6));
}

// The reference code's default init: Xavier uniform weights (fan-average variance scaling), zero biases.
template <class Layer>
void default_init(Layer& layer) {
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(layer->weight);
  torch::nn::init::zeros_(layer->bias);
}

// Layers whose output is added to a residual path start at zero, so every block starts as the identity.
template <class Layer>
void zero_init(Layer& layer) {
  torch::NoGradGuard no_grad;
  torch::nn::init::zeros_(layer->weight);
  torch::nn::init::zeros_(layer->bias);
}

}  // namespace

torch::Tensor pad_for_downsample(const torch::Tensor& x, const UNetOptions& options) {
  // TF's 'SAME' for a 3x3 kernel at stride 2 on an even side: nothing before, one row and column after.
  return options.downsample_padding == 0 ? torch::constant_pad_nd(x, {0, 1, 0, 1}) : x;
}

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim) {
  TORCH_CHECK(dim % 2 == 0 && dim >= 4, "timestep embedding dimension must be even and at least 4, got ", dim);
  const int64_t half = dim / 2;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(t.device());
  // exp(-log(10000) i / (half - 1)) in diffusers' order of float32 operations (multiply, then divide): the reference
  // TF code's order (i · (-log(10000) / (half - 1))) rounds differently, by up to 3e-5 in the embedding at t ≈ 1000,
  // and a model exported to diffusers' UNet2DModel should be the same function there, bit for bit in this part.
  const torch::Tensor frequencies = torch::exp(torch::arange(half, options) * -std::log(10000.0) / (half - 1));
  const torch::Tensor arguments = t.to(torch::kFloat32).unsqueeze(1) * frequencies.unsqueeze(0);
  return torch::cat({torch::sin(arguments), torch::cos(arguments)}, 1);
}

ResBlockImpl::ResBlockImpl(int64_t in_channels, int64_t out_channels, int64_t embedding_channels, double dropout)
    : norm1_(register_module("norm1", group_norm(in_channels))),
      norm2_(register_module("norm2", group_norm(out_channels))),
      conv1_(register_module("conv1", conv(in_channels, out_channels, 3))),
      conv2_(register_module("conv2", conv(out_channels, out_channels, 3))),
      embedding_proj_(register_module("embedding_proj", torch::nn::Linear(embedding_channels, out_channels))),
      dropout_(register_module("dropout", torch::nn::Dropout(dropout))) {
  default_init(conv1_);
  default_init(embedding_proj_);
  zero_init(conv2_);
  if (in_channels != out_channels) {
    skip_ = register_module("skip", conv(in_channels, out_channels, 1));
    default_init(skip_);
  }
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& embedding) {
  torch::Tensor h = conv1_(torch::silu(norm1_(x)));
  h = h + embedding_proj_(torch::silu(embedding)).unsqueeze(-1).unsqueeze(-1);
  h = conv2_(dropout_(torch::silu(norm2_(h))));
  return (skip_ ? skip_(x) : x) + h;
}

AttentionBlockImpl::AttentionBlockImpl(int64_t channels)
    : norm_(register_module("norm", group_norm(channels))),
      q_(register_module("q", conv(channels, channels, 1))),
      k_(register_module("k", conv(channels, channels, 1))),
      v_(register_module("v", conv(channels, channels, 1))),
      proj_out_(register_module("proj_out", conv(channels, channels, 1))) {
  default_init(q_);
  default_init(k_);
  default_init(v_);
  zero_init(proj_out_);
}

torch::Tensor AttentionBlockImpl::forward(const torch::Tensor& x) {
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const torch::Tensor h = norm_(x);
  // [B, C, H, W] → [B, 1 head, HW, C]; the fused kernel scales by 1/√C as the reference does. The fused kernels
  // (flash, memory-efficient; CUDA's and the CPU's) need the channels at stride 1, which channels-last has as
  // it is; from NCHW it takes a copy, else PyTorch falls back to the unfused math path (a profile showed it).
  const auto tokens = [&](const torch::Tensor& t) { return t.flatten(2).transpose(1, 2).unsqueeze(1).contiguous(); };
  const torch::Tensor attended =
      at::scaled_dot_product_attention(tokens(q_(h)), tokens(k_(h)), tokens(v_(h)));
  const torch::Tensor out = attended.squeeze(1).transpose(1, 2).reshape({batch, channels, height, width});
  return x + proj_out_(out);
}

UNetImpl::UNetImpl(const UNetOptions& options) : options_(options) {
  const int64_t levels = static_cast<int64_t>(options.channel_mult.size());
  if (levels == 0) throw std::invalid_argument("U-Net: channel_mult must not be empty");
  if (options.downsample_padding != 0 && options.downsample_padding != 1) {
    throw std::invalid_argument("U-Net: downsample_padding must be 0 or 1, got " + std::to_string(options.downsample_padding));
  }
  if (options.image_size % (int64_t{1} << (levels - 1)) != 0) {
    throw std::invalid_argument("U-Net: image size " + std::to_string(options.image_size) + " cannot be halved " +
                                std::to_string(levels - 1) + " times");
  }
  const int64_t ch = options.channels;
  const int64_t embedding_channels = 4 * ch;
  time_fc1_ = register_module("time_fc1", torch::nn::Linear(ch, embedding_channels));
  time_fc2_ = register_module("time_fc2", torch::nn::Linear(embedding_channels, embedding_channels));
  default_init(time_fc1_);
  default_init(time_fc2_);
  conv_in_ = register_module("conv_in", conv(options.in_channels, ch, 3));
  default_init(conv_in_);

  // Down path; skip_channels records what each stage hands to the up path (conv_in's output first).
  std::vector<int64_t> skip_channels = {ch};
  int64_t current = ch;
  int64_t resolution = options.image_size;
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t out = ch * options.channel_mult[static_cast<size_t>(level)];
    for (int64_t block = 0; block < options.num_res_blocks; ++block) {
      const std::string name = "down_" + std::to_string(level) + "_" + std::to_string(block);
      Stage stage;
      stage.res = register_module(name + "_res", ResBlock(current, out, embedding_channels, options.dropout));
      if (has_attention(options, resolution)) stage.attention = register_module(name + "_attn", AttentionBlock(out));
      down_stages_.push_back(stage);
      current = out;
      skip_channels.push_back(current);
    }
    if (level != levels - 1) {
      auto down = register_module("downsample_" + std::to_string(level),
                                  conv(current, current, 3, 2, options.downsample_padding));
      default_init(down);
      downsamples_.push_back(down);
      skip_channels.push_back(current);
      resolution /= 2;
    }
  }

  mid_res1_ = register_module("mid_res1", ResBlock(current, current, embedding_channels, options.dropout));
  mid_attention_ = register_module("mid_attn", AttentionBlock(current));
  mid_res2_ = register_module("mid_res2", ResBlock(current, current, embedding_channels, options.dropout));

  for (int64_t level = levels - 1; level >= 0; --level) {
    const int64_t out = ch * options.channel_mult[static_cast<size_t>(level)];
    for (int64_t block = 0; block <= options.num_res_blocks; ++block) {
      const std::string name = "up_" + std::to_string(level) + "_" + std::to_string(block);
      const int64_t skip = skip_channels.back();
      skip_channels.pop_back();
      Stage stage;
      stage.res = register_module(name + "_res", ResBlock(current + skip, out, embedding_channels, options.dropout));
      if (has_attention(options, resolution)) stage.attention = register_module(name + "_attn", AttentionBlock(out));
      up_stages_.push_back(stage);
      current = out;
    }
    if (level != 0) {
      auto up = register_module("upsample_" + std::to_string(level), conv(current, current, 3));
      default_init(up);
      upsamples_.push_back(up);
      resolution *= 2;
    }
  }
  norm_out_ = register_module("norm_out", group_norm(current));
  conv_out_ = register_module("conv_out", conv(current, options.out_channels, 3));
  zero_init(conv_out_);
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels && x.size(2) == options_.image_size &&
                  x.size(3) == options_.image_size,
              "U-Net expects [B, ", options_.in_channels, ", ", options_.image_size, ", ", options_.image_size,
              "] input, got ", x.sizes());
  const torch::Tensor embedding =
      time_fc2_(torch::silu(time_fc1_(timestep_embedding(t, options_.channels).to(x.scalar_type()))));

  std::vector<torch::Tensor> skips;
  torch::Tensor h = conv_in_(x);
  skips.push_back(h);
  const int64_t levels = static_cast<int64_t>(options_.channel_mult.size());
  size_t stage_index = 0;
  for (int64_t level = 0; level < levels; ++level) {
    for (int64_t block = 0; block < options_.num_res_blocks; ++block, ++stage_index) {
      Stage& stage = down_stages_[stage_index];
      h = stage.res(h, embedding);
      if (stage.attention) h = stage.attention(h);
      skips.push_back(h);
    }
    if (level != levels - 1) {
      h = downsamples_[static_cast<size_t>(level)](pad_for_downsample(h, options_));
      skips.push_back(h);
    }
  }

  h = mid_res2_(mid_attention_(mid_res1_(h, embedding)), embedding);

  stage_index = 0;
  size_t upsample_index = 0;
  for (int64_t level = levels - 1; level >= 0; --level) {
    for (int64_t block = 0; block <= options_.num_res_blocks; ++block, ++stage_index) {
      Stage& stage = up_stages_[stage_index];
      h = stage.res(torch::cat({h, skips.back()}, 1), embedding);
      skips.pop_back();
      if (stage.attention) h = stage.attention(h);
    }
    if (level != 0) {
      h = torch::nn::functional::interpolate(
          h, torch::nn::functional::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest));
      h = upsamples_[upsample_index++](h);
    }
  }
  return conv_out_(torch::silu(norm_out_(h)));
}

namespace {

// A convolution's output at side `side`: every output pixel does weight.numel() multiply-adds.
int64_t conv_flops(const torch::nn::Conv2d& conv, int64_t side) { return 2 * conv->weight.numel() * side * side; }

}  // namespace

int64_t ResBlockImpl::forward_flops(int64_t side) const {
  const int64_t skip = skip_ ? conv_flops(skip_, side) : 0;
  return conv_flops(conv1_, side) + conv_flops(conv2_, side) + 2 * embedding_proj_->weight.numel() + skip;
}

int64_t AttentionBlockImpl::forward_flops(int64_t side) const {
  const int64_t tokens = side * side, channels = q_->weight.size(0);
  return conv_flops(q_, side) + conv_flops(k_, side) + conv_flops(v_, side) + conv_flops(proj_out_, side) +
         2 * (2 * tokens * tokens * channels);  // QKᵀ and AV
}

int64_t UNetImpl::forward_flops() const {
  int64_t side = options_.image_size;
  int64_t flops = 2 * (time_fc1_->weight.numel() + time_fc2_->weight.numel()) + conv_flops(conv_in_, side);
  const int64_t levels = static_cast<int64_t>(options_.channel_mult.size());
  size_t stage = 0;
  for (int64_t level = 0; level < levels; ++level) {
    for (int64_t block = 0; block < options_.num_res_blocks; ++block, ++stage) {
      flops += down_stages_[stage].res->forward_flops(side);
      if (down_stages_[stage].attention) flops += down_stages_[stage].attention->forward_flops(side);
    }
    if (level != levels - 1) {
      side /= 2;  // a stride-2 convolution: its output is half the side
      flops += conv_flops(downsamples_[static_cast<size_t>(level)], side);
    }
  }
  flops += mid_res1_->forward_flops(side) + mid_attention_->forward_flops(side) + mid_res2_->forward_flops(side);
  stage = 0;
  for (int64_t level = levels - 1; level >= 0; --level) {
    for (int64_t block = 0; block <= options_.num_res_blocks; ++block, ++stage) {
      flops += up_stages_[stage].res->forward_flops(side);
      if (up_stages_[stage].attention) flops += up_stages_[stage].attention->forward_flops(side);
    }
    if (level != 0) {
      side *= 2;  // nearest-neighbour upsampling, then a convolution at the new side
      flops += conv_flops(upsamples_[static_cast<size_t>(levels - 1 - level)], side);
    }
  }
  return flops + conv_flops(conv_out_, side);
}

void use_channels_last(UNet& model) {
  torch::NoGradGuard no_grad;
  for (torch::Tensor& p : model->parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

int64_t UNetImpl::parameter_count() const {
  int64_t count = 0;
  for (const torch::Tensor& p : parameters()) count += p.numel();
  return count;
}

}  // namespace ddpm
