#include "trainer/model/unet_inference.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "trainer/model/cpu_parallel.h"
#include "trainer/model/group_norm_nhwc.h"

namespace ddpm {

namespace {

// oneDNN's fused convolutions (ATen's mkldnn::_convolution_pointwise, what torch.compile's CPU inference passes
// call): a dense NHWC input and a packed weight give a dense NHWC output, with no reorder of either.
using ScalarList = c10::List<std::optional<at::Scalar>>;
using PointwiseConv = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, at::IntArrayRef,
                                 at::IntArrayRef, at::IntArrayRef, int64_t, c10::string_view, ScalarList,
                                 std::optional<c10::string_view>);
// y = conv(x) + other
using BinaryConv = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                              at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, c10::string_view,
                              std::optional<at::Scalar>, std::optional<c10::string_view>, ScalarList,
                              std::optional<c10::string_view>);
// other += conv(x)
using BinaryConvInPlace = at::Tensor&(at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                      at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, c10::string_view,
                                      std::optional<at::Scalar>, std::optional<c10::string_view>, ScalarList,
                                      std::optional<c10::string_view>);

const c10::TypedOperatorHandle<PointwiseConv>& pointwise_conv() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_convolution_pointwise", "").typed<PointwiseConv>();
  return op;
}
const c10::TypedOperatorHandle<BinaryConv>& binary_conv() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_convolution_pointwise", "binary").typed<BinaryConv>();
  return op;
}
const c10::TypedOperatorHandle<BinaryConvInPlace>& binary_conv_in_place() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mkldnn::_convolution_pointwise_", "binary")
                             .typed<BinaryConvInPlace>();
  return op;
}

// The weights reordered once into oneDNN's layout for inputs of `side` x `side` (the batch does not change it).
UNetInference::PackedConv pack(const std::vector<torch::nn::Conv2d>& convs, int64_t side) {
  // Several convolutions of one input: their weights stacked along the output channels (attention's q, k, v).
  std::vector<torch::Tensor> weights, biases;
  for (const auto& conv : convs) {
    weights.push_back(conv->weight.detach());
    biases.push_back(conv->bias.detach());
  }
  const auto& options = convs.front()->options;
  UNetInference::PackedConv packed;
  packed.weight = torch::cat(weights, 0).contiguous();
  packed.bias = torch::cat(biases, 0).contiguous();
  packed.padding = std::get<torch::ExpandingArray<2>>(options.padding())->at(0);
  packed.stride = options.stride()->at(0);
  const int64_t p = packed.padding, s = packed.stride;
  packed.packed = at::mkldnn_reorder_conv2d_weight(packed.weight.to_mkldnn(), {p, p}, {s, s}, {1, 1}, 1,
                                                   std::vector<int64_t>{1, packed.weight.size(1), side, side});
  return packed;
}

UNetInference::PackedConv pack(const torch::nn::Conv2d& conv, int64_t side) { return pack(std::vector{conv}, side); }

torch::Tensor nhwc(const torch::Tensor& x) { return x.contiguous(torch::MemoryFormat::ChannelsLast); }

torch::Tensor run(const UNetInference::PackedConv& conv, const torch::Tensor& x_in) {
  const torch::Tensor x = nhwc(x_in);
  const int64_t p = conv.padding, s = conv.stride;
  return pointwise_conv().call(x, conv.packed, conv.bias, {p, p}, {s, s}, {1, 1}, 1, "none", ScalarList(), std::nullopt);
}

// conv(x) + residual, the addition inside the convolution.
torch::Tensor run_add(const UNetInference::PackedConv& conv, const torch::Tensor& x_in, const torch::Tensor& residual) {
  const torch::Tensor x = nhwc(x_in);
  const int64_t p = conv.padding, s = conv.stride;
  return binary_conv().call(x, nhwc(residual), conv.packed, conv.bias, {p, p}, {s, s}, {1, 1}, 1, "add",
                            std::nullopt, std::nullopt, ScalarList(), std::nullopt);
}

// residual += conv(x), residual NHWC and not aliased elsewhere.
void run_add_into(const UNetInference::PackedConv& conv, const torch::Tensor& x_in, torch::Tensor& residual) {
  const torch::Tensor x = nhwc(x_in);
  const int64_t p = conv.padding, s = conv.stride;
  binary_conv_in_place().call(residual, x, conv.packed, conv.bias, {p, p}, {s, s}, {1, 1}, 1, "add",
                              std::nullopt, std::nullopt, ScalarList(), std::nullopt);
}

// torch::cat({a, b}, 1) of float32 NHWC tensors, NHWC: per pixel, a's channels then b's (ATen's cat takes the
// strided path for channels-last inputs).
torch::Tensor cat_channels(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  RECORD_FUNCTION("ddpm::cat_channels", std::vector<c10::IValue>());
  const torch::Tensor a = nhwc(a_in), b = nhwc(b_in);
  const int64_t batch = a.size(0), ca = a.size(1), cb = b.size(1), pixels = a.size(2) * a.size(3);
  TORCH_CHECK(b.size(0) == batch && b.size(2) == a.size(2) && b.size(3) == a.size(3), "cat_channels: ", a.sizes(), " and ", b.sizes());
  torch::Tensor out = torch::empty({batch, ca + cb, a.size(2), a.size(3)}, a.options().memory_format(torch::MemoryFormat::ChannelsLast));
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::memcpy(po + r * (ca + cb), pa + r * ca, static_cast<size_t>(ca) * sizeof(float));
      std::memcpy(po + r * (ca + cb) + ca, pb + r * cb, static_cast<size_t>(cb) * sizeof(float));
    }
  };
  if (out.numel() < 16384) {
    rows(0, batch * pixels);
  } else {
    parallel_chunks(batch * pixels, rows);
  }
  return out;
}

torch::Tensor norm_weight(const torch::nn::GroupNorm& norm) { return norm->weight.detach().contiguous(); }
torch::Tensor norm_bias(const torch::nn::GroupNorm& norm) { return norm->bias.detach().contiguous(); }

}  // namespace

bool UNetInference::supported(const torch::Device& device) { return device.is_cpu() && at::hasMKLDNN(); }

UNetInference::UNetInference(UNet model) : model_(std::move(model)) {
  torch::NoGradGuard no_grad;
  const UNetImpl& m = *model_;
  const UNetOptions& o = m.options_;
  const int64_t levels = static_cast<int64_t>(o.channel_mult.size());
  const auto side = [&](int64_t level) { return o.image_size >> level; };
  std::vector<torch::Tensor> projection_weights, projection_biases;
  int64_t offset = 0;
  const auto make_block = [&](const ResBlock& res, int64_t level) {
    Block b;
    b.norm1_weight = norm_weight(res->norm1_);
    b.norm1_bias = norm_bias(res->norm1_);
    b.norm2_weight = norm_weight(res->norm2_);
    b.norm2_bias = norm_bias(res->norm2_);
    b.conv1 = pack(res->conv1_, side(level));
    b.conv2 = pack(res->conv2_, side(level));
    if (res->skip_) b.skip = pack(res->skip_, side(level));
    b.out_channels = res->conv2_->weight.size(0);
    b.embedding_offset = offset;
    offset += b.out_channels;
    projection_weights.push_back(res->embedding_proj_->weight.detach());
    projection_biases.push_back(res->embedding_proj_->bias.detach());
    return b;
  };
  const auto make_attention = [&](const AttentionBlock& attn, int64_t level) {
    Attention a;
    if (!attn) return a;
    a.norm_weight = norm_weight(attn->norm_);
    a.norm_bias = norm_bias(attn->norm_);
    a.qkv = pack({attn->q_, attn->k_, attn->v_}, side(level));
    a.proj_out = pack(attn->proj_out_, side(level));
    return a;
  };
  groups_ = m.norm_out_->options.num_groups();
  eps_ = m.norm_out_->options.eps();
  time_fc1_weight_ = m.time_fc1_->weight.detach();
  time_fc1_bias_ = m.time_fc1_->bias.detach();
  time_fc2_weight_ = m.time_fc2_->weight.detach();
  time_fc2_bias_ = m.time_fc2_->bias.detach();
  conv_in_ = pack(m.conv_in_, side(0));
  for (size_t i = 0; i < m.down_stages_.size(); ++i) {
    const int64_t level = static_cast<int64_t>(i) / o.num_res_blocks;
    down_.push_back(make_block(m.down_stages_[i].res, level));
    down_attention_.push_back(make_attention(m.down_stages_[i].attention, level));
  }
  for (size_t level = 0; level < m.downsamples_.size(); ++level) {
    // downsample_padding 0: the convolution sees the input with a row and a column of zeros added.
    const int64_t padded = o.downsample_padding == 0 ? 1 : 0;
    downsamples_.push_back(pack(m.downsamples_[level], side(static_cast<int64_t>(level)) + padded));
  }
  mid1_ = make_block(m.mid_res1_, levels - 1);
  mid_attention_ = make_attention(m.mid_attention_, levels - 1);
  mid2_ = make_block(m.mid_res2_, levels - 1);
  for (size_t i = 0; i < m.up_stages_.size(); ++i) {
    const int64_t level = levels - 1 - static_cast<int64_t>(i) / (o.num_res_blocks + 1);
    up_.push_back(make_block(m.up_stages_[i].res, level));
    up_attention_.push_back(make_attention(m.up_stages_[i].attention, level));
  }
  // Upsample u runs after level levels − 1 − u, on the doubled side of the level above it.
  for (size_t u = 0; u < m.upsamples_.size(); ++u) {
    upsamples_.push_back(pack(m.upsamples_[u], side(levels - 2 - static_cast<int64_t>(u))));
  }
  norm_out_weight_ = norm_weight(m.norm_out_);
  norm_out_bias_ = norm_bias(m.norm_out_);
  conv_out_ = pack(m.conv_out_, side(0));
  projection_weight_ = torch::cat(projection_weights, 0).contiguous();
  projection_bias_ = torch::cat(projection_biases, 0).contiguous();
}

torch::Tensor UNetInference::res_block(const Block& block, torch::Tensor x, const torch::Tensor& embeddings,
                                       bool overwrite_x) const {
  const torch::Tensor h = run(block.conv1, group_norm_nhwc(x, {}, block.norm1_weight, block.norm1_bias, groups_, eps_, true));
  const torch::Tensor a = group_norm_nhwc(h, embeddings.narrow(1, block.embedding_offset, block.out_channels),
                                          block.norm2_weight, block.norm2_bias, groups_, eps_, true);
  if (!block.skip.weight.defined()) {  // x + conv2(...)
    if (!overwrite_x) return run_add(block.conv2, a, x);
    run_add_into(block.conv2, a, x);
    return x;
  }
  torch::Tensor out = run(block.skip, x);
  run_add_into(block.conv2, a, out);
  return out;
}

torch::Tensor UNetInference::attention(const Attention& block, torch::Tensor x) const {
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const torch::Tensor h = group_norm_nhwc(x, {}, block.norm_weight, block.norm_bias, groups_, eps_, false);
  // [B, 3C, H, W] in NHWC memory is [B, HW, 3C]: q, k and v are its thirds, channels at stride 1 as the fused
  // attention kernel wants them, no copy.
  const torch::Tensor tokens = run(block.qkv, h).permute({0, 2, 3, 1}).reshape({batch, height * width, 3 * channels});
  const auto third = [&](int64_t i) { return tokens.narrow(2, i * channels, channels).unsqueeze(1); };
  const torch::Tensor attended = at::scaled_dot_product_attention(third(0), third(1), third(2));  // [B, 1, HW, C]
  const torch::Tensor out = attended.reshape({batch, height, width, channels}).permute({0, 3, 1, 2});  // NHWC
  run_add_into(block.proj_out, out, x);  // x + proj_out(...), into x: its only holder is the caller
  return x;
}

torch::Tensor UNetInference::forward(const torch::Tensor& x, const torch::Tensor& t) const {
  const UNetOptions& o = model_->options();
  TORCH_CHECK(x.dim() == 4 && x.size(1) == o.in_channels && x.size(2) == o.image_size && x.size(3) == o.image_size &&
                  x.scalar_type() == torch::kFloat32 && x.device().is_cpu(),
              "UNetInference expects float32 [B, ", o.in_channels, ", ", o.image_size, ", ", o.image_size,
              "] on the CPU, got ", x.sizes(), " ", x.scalar_type(), " on ", x.device());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), "UNetInference: one timestep per image, got t ", t.sizes());
  TORCH_CHECK(!model_->is_training(), "UNetInference needs the model in eval mode (no dropout)");
  torch::NoGradGuard no_grad;
  // Every residual block's embedding_proj(SiLU(embedding(t))), [B, Σ out channels], computed once per distinct
  // timestep of the batch (a sampling step has one) and one timestep at a time: a matrix product's rows depend
  // on how many there are (MKL's kernels differ), and an image's must not depend on its batch.
  const torch::Tensor steps = t.to(torch::kLong).contiguous();
  const int64_t* step = steps.data_ptr<int64_t>();
  std::vector<int64_t> distinct, row_of(static_cast<size_t>(steps.numel()));
  for (int64_t i = 0; i < steps.numel(); ++i) {
    const auto found = std::find(distinct.begin(), distinct.end(), step[i]);
    row_of[static_cast<size_t>(i)] = found - distinct.begin();
    if (found == distinct.end()) distinct.push_back(step[i]);
  }
  std::vector<torch::Tensor> rows;
  for (const int64_t value : distinct) {
    const torch::Tensor embedding = torch::linear(
        torch::silu(torch::linear(timestep_embedding(torch::full({1}, value, steps.options()), o.channels),
                                  time_fc1_weight_, time_fc1_bias_)),
        time_fc2_weight_, time_fc2_bias_);
    rows.push_back(torch::addmm(projection_bias_, torch::silu(embedding), projection_weight_.t()));
  }
  const torch::Tensor projections =
      distinct.size() == 1 ? rows.front().expand({x.size(0), -1})
                           : torch::cat(rows).index_select(0, torch::tensor(row_of, steps.options()));

  std::vector<torch::Tensor> skips;
  torch::Tensor h = run(conv_in_, x);
  skips.push_back(h);
  const int64_t levels = static_cast<int64_t>(o.channel_mult.size());
  size_t stage = 0;
  for (int64_t level = 0; level < levels; ++level) {
    for (int64_t b = 0; b < o.num_res_blocks; ++b, ++stage) {
      h = res_block(down_[stage], h, projections, /*overwrite_x=*/false);  // h is a skip too
      if (down_attention_[stage].qkv.weight.defined()) h = attention(down_attention_[stage], h);
      skips.push_back(h);
    }
    if (level != levels - 1) {
      h = run(downsamples_[static_cast<size_t>(level)], pad_for_downsample(h, o));
      skips.push_back(h);
    }
  }
  h = res_block(mid2_, attention(mid_attention_, res_block(mid1_, h, projections, false)), projections, true);
  stage = 0;
  size_t upsample = 0;
  for (int64_t level = levels - 1; level >= 0; --level) {
    for (int64_t b = 0; b <= o.num_res_blocks; ++b, ++stage) {
      h = res_block(up_[stage], cat_channels(h, skips.back()), projections, true);
      skips.pop_back();
      if (up_attention_[stage].qkv.weight.defined()) h = attention(up_attention_[stage], h);
    }
    if (level != 0) {
      h = torch::nn::functional::interpolate(
          h, torch::nn::functional::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest));
      h = run(upsamples_[upsample++], h);
    }
  }
  const torch::Tensor out = run(conv_out_, group_norm_nhwc(h, {}, norm_out_weight_, norm_out_bias_, groups_, eps_, true));
  return out.contiguous(x.suggest_memory_format());
}

}  // namespace ddpm

