// The DDPM U-Net: the paper's parameter count (checked against a count derived here layer by layer), shapes
// for CIFAR-10 and Fashion-MNIST sizes, and a fresh model predicting ε = 0.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "trainer/tools/profile.h"
#include "trainer/model/unet.h"

namespace {

// Independent count from the architecture description (Ho et al. 2020, Appendix B).
int64_t conv(int64_t in, int64_t out, int64_t k) { return in * out * k * k + out; }
int64_t norm(int64_t c) { return 2 * c; }
int64_t linear(int64_t in, int64_t out) { return in * out + out; }
int64_t res(int64_t in, int64_t out, int64_t emb) {
  return norm(in) + conv(in, out, 3) + linear(emb, out) + norm(out) + conv(out, out, 3) + (in != out ? conv(in, out, 1) : 0);
}
int64_t attention(int64_t c) { return norm(c) + 4 * linear(c, c); }

int64_t expected_count(const ddpm::UNetOptions& o) {
  const int64_t ch = o.channels, emb = 4 * ch;
  const auto attn_at = [&](int64_t r) {
    return std::find(o.attention_resolutions.begin(), o.attention_resolutions.end(), r) != o.attention_resolutions.end();
  };
  int64_t n = linear(ch, emb) + linear(emb, emb) + conv(o.in_channels, ch, 3);
  std::vector<int64_t> skips = {ch};
  int64_t c = ch, r = o.image_size;
  const int64_t levels = static_cast<int64_t>(o.channel_mult.size());
  for (int64_t l = 0; l < levels; ++l) {
    for (int64_t b = 0; b < o.num_res_blocks; ++b) {
      n += res(c, ch * o.channel_mult[l], emb) + (attn_at(r) ? attention(ch * o.channel_mult[l]) : 0);
      c = ch * o.channel_mult[l];
      skips.push_back(c);
    }
    if (l != levels - 1) {
      n += conv(c, c, 3);
      skips.push_back(c);
      r /= 2;
    }
  }
  n += 2 * res(c, c, emb) + attention(c);
  for (int64_t l = levels - 1; l >= 0; --l) {
    for (int64_t b = 0; b <= o.num_res_blocks; ++b) {
      n += res(c + skips.back(), ch * o.channel_mult[l], emb) + (attn_at(r) ? attention(ch * o.channel_mult[l]) : 0);
      skips.pop_back();
      c = ch * o.channel_mult[l];
    }
    if (l != 0) {
      n += conv(c, c, 3);
      r *= 2;
    }
  }
  return n + norm(c) + conv(c, o.out_channels, 3);
}

TEST(UNet, Cifar10ModelHasThePapersParameterCount) {
  const ddpm::UNetOptions options = ddpm::ddpm_cifar10_unet();  // ch 128, mult 1,2,2,2, 2 blocks, attention at 16, 32x32x3
  const ddpm::UNet model(options);
  EXPECT_EQ(expected_count(options), 35746307);
  EXPECT_EQ(model->parameter_count(), 35746307);
}

TEST(UNet, CountMatchesForOtherShapes) {
  ddpm::UNetOptions options = ddpm::ddpm_cifar10_unet();
  options.image_size = 28;
  options.in_channels = options.out_channels = 1;
  options.channels = 32;
  options.channel_mult = {1, 2, 2};
  options.num_res_blocks = 1;
  options.attention_resolutions = {7, 14};
  const ddpm::UNet model(options);
  EXPECT_EQ(model->parameter_count(), expected_count(options));
}

TEST(UNet, ShapesForCifarAndFashionMnist) {
  torch::manual_seed(0);
  ddpm::UNetOptions cifar = ddpm::ddpm_cifar10_unet();
  cifar.channels = 32;  // the paper's layout at a quarter of the width keeps the test fast
  ddpm::UNet cifar_model(cifar);
  const torch::Tensor x = torch::randn({2, 3, 32, 32});
  EXPECT_EQ(cifar_model->forward(x, torch::tensor({0, 999})).sizes(), x.sizes());

  ddpm::UNetOptions fashion = ddpm::ddpm_cifar10_unet();
  fashion.image_size = 28;
  fashion.in_channels = fashion.out_channels = 1;
  fashion.channels = 32;
  fashion.channel_mult = {1, 2, 2};
  fashion.attention_resolutions = {7};
  ddpm::UNet fashion_model(fashion);
  const torch::Tensor y = torch::randn({3, 1, 28, 28});
  EXPECT_EQ(fashion_model->forward(y, torch::tensor({1, 2, 3})).sizes(), y.sizes());
  EXPECT_THROW(fashion_model->forward(torch::randn({1, 1, 32, 32}), torch::tensor({1})), c10::Error);
}

TEST(UNet, FreshModelPredictsZeroAndTrainingMovesIt) {
  torch::manual_seed(1);
  ddpm::UNetOptions options = ddpm::ddpm_cifar10_unet();
  options.channels = 32;
  options.channel_mult = {1, 2};
  options.attention_resolutions = {16};
  ddpm::UNet model(options);
  const torch::Tensor x = torch::randn({2, 3, 32, 32});
  const torch::Tensor t = torch::tensor({5, 500});
  EXPECT_EQ(model->forward(x, t).abs().max().item<float>(), 0.0f);
  // The zero init must not block learning: one SGD step makes the output nonzero.
  torch::optim::SGD sgd(model->parameters(), 0.1);
  const torch::Tensor loss = (model->forward(x, t) - torch::ones_like(x)).pow(2).mean();
  loss.backward();
  sgd.step();
  EXPECT_GT(model->forward(x, t).abs().max().item<float>(), 0.0f);
}

// Ho et al.'s 'SAME' at stride 2 (downsample_padding 0) pads one row and column after and none before; the same
// weights under improved-diffusion's symmetric padding 1 are another function.
TEST(UNet, DownsamplePaddingZeroIsTheReferencesSamePadding) {
  ddpm::UNetOptions options = ddpm::ddpm_cifar10_unet();
  EXPECT_EQ(options.downsample_padding, 0);
  const torch::Tensor x = torch::arange(16, torch::kFloat32).reshape({1, 1, 4, 4});
  const torch::Tensor padded = ddpm::pad_for_downsample(x, options);
  ASSERT_EQ(padded.sizes(), torch::IntArrayRef({1, 1, 5, 5}));
  EXPECT_TRUE(torch::equal(padded.slice(2, 0, 4).slice(3, 0, 4), x));  // nothing before
  EXPECT_EQ(padded.slice(2, 4).abs().sum().item<float>() + padded.slice(3, 4).abs().sum().item<float>(), 0.0f);
  options.downsample_padding = 1;
  EXPECT_TRUE(ddpm::pad_for_downsample(x, options).is_same(x));  // the convolution pads
  options.image_size = 16;
  options.channels = 32;
  options.channel_mult = {1, 2};
  options.attention_resolutions = {8};
  options.dropout = 0.0;
  torch::manual_seed(2);
  ddpm::UNet same(options);
  options.downsample_padding = 0;
  torch::manual_seed(2);
  ddpm::UNet reference(options);
  torch::NoGradGuard no_grad;
  for (auto& p : reference->parameters()) p.add_(torch::randn_like(p) * 0.05);
  const auto params = reference->parameters();
  auto targets = same->parameters();
  for (size_t i = 0; i < params.size(); ++i) targets[i].copy_(params[i]);
  const torch::Tensor input = torch::randn({2, 3, 16, 16}), t = torch::tensor({5, 500});
  EXPECT_GT((same->forward(input, t) - reference->forward(input, t)).abs().max().item<double>(), 1e-3);
  options.downsample_padding = 2;
  EXPECT_THROW(ddpm::UNet{options}, std::invalid_argument);
}

TEST(UNet, TimestepEmbeddingIsSinusoidal) {
  const torch::Tensor e = ddpm::timestep_embedding(torch::tensor({0, 10}), 8);
  ASSERT_EQ(e.sizes(), torch::IntArrayRef({2, 8}));
  // t = 0: sin part 0, cos part 1. t = 10, frequency 0 is 1: sin(10), cos(10).
  EXPECT_FLOAT_EQ(e[0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(e[0][4].item<float>(), 1.0f);
  EXPECT_NEAR(e[1][0].item<float>(), std::sin(10.0), 1e-6);
  EXPECT_NEAR(e[1][4].item<float>(), std::cos(10.0), 1e-6);
  // The last frequency is 1/10000 (exp(-log(10000) (half-1)/(half-1))).
  EXPECT_NEAR(e[1][3].item<float>(), std::sin(10.0 / 10000.0), 1e-7);
}

}  // namespace

// FLOPs of one forward pass, counted by hand for a one-level model at side 8 (ch 32, one res block, attention):
// time MLP 2·(32·128 + 128·128) = 40,960; conv_in 2·(32·1·9)·64 = 36,864; a 32→32 res block 2·(2·9216·64) +
// 2·4096 = 2,367,488; attention 4·2·1024·64 + 2·2·64²·32 = 1,048,576; an up res block 64→32 with its 1x1 skip
// 2·(18432 + 9216 + 2048)·64 + 8192 = 3,809,280; conv_out 36,864.
TEST(UNet, ForwardFlopsCountedFromTheLayers) {
  ddpm::UNetOptions options = ddpm::ddpm_cifar10_unet();
  options.image_size = 8;
  options.in_channels = options.out_channels = 1;
  options.channels = 32;
  options.channel_mult = {1};
  options.num_res_blocks = 1;
  options.attention_resolutions = {8};
  const ddpm::UNet model(options);
  const int64_t res = 2367488, attention = 1048576, up_res = 3809280;
  EXPECT_EQ(model->forward_flops(), 40960 + 36864 + (res + attention) + (res + attention + res) + 2 * (up_res + attention) + 36864);
  // The CIFAR-10 model against an independent count: PyTorch's FlopCounterMode on diffusers' UNet2DModel built
  // as the same network (launch/bench/peer_bench.py, 35,746,307 parameters; attention through the math backend so
  // that the counter sees its matrix products), divided by its batch of 2. About 6.2 G multiply-adds per image.
  const ddpm::UNet cifar(ddpm::ddpm_cifar10_unet());
  EXPECT_EQ(cifar->forward_flops(), 12'443'713'536);
}

// The attention block runs through a fused kernel in both memory formats, forward and backward: from NCHW the
// tokens' channels are not at stride 1, and PyTorch then silently takes its unfused math path (found in a profile).
TEST(UNet, AttentionRunsThroughTheFusedKernelInBothMemoryFormats) {
  for (const bool channels_last : {false, true}) {
    ddpm::AttentionBlock block(32);
    torch::Tensor x = torch::randn({2, 32, 8, 8});
    if (channels_last) {
      torch::NoGradGuard no_grad;
      for (torch::Tensor& p : block->parameters()) {
        if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
      }
      x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    }
    x.requires_grad_();
    ddpm::Profiler profiler(torch::Device(torch::kCPU));
    block(x).sum().backward();
    const nlohmann::json summary = ddpm::summarize_profile(profiler.stop(), 1, /*top=*/1000);
    std::vector<std::string> names;
    for (const nlohmann::json& entry : summary["top"]) names.push_back(entry["name"]);
    const auto ran = [&](const std::string& op) { return std::find(names.begin(), names.end(), op) != names.end(); };
    EXPECT_TRUE(ran("aten::_scaled_dot_product_flash_attention_for_cpu")) << "channels_last " << channels_last;
    EXPECT_TRUE(ran("aten::_scaled_dot_product_flash_attention_for_cpu_backward")) << "channels_last " << channels_last;
    EXPECT_FALSE(ran("aten::_scaled_dot_product_attention_math")) << "channels_last " << channels_last;
  }
}
