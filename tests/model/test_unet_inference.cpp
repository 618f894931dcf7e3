// UNetInference, the CPU sampling form of the U-Net: the function of UNetImpl::forward up to float round-off, for
// NCHW and channels-last weights and inputs, both downsampling paddings, CIFAR-like and Fashion-MNIST-like shapes; an image's ε independent of
// its batch bit for bit; the inputs it cannot take refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "trainer/model/unet.h"
#include "trainer/model/unet_inference.h"

namespace {

ddpm::UNetOptions small_rgb() {  // two levels, attention at 8x8, 16x16x3
  ddpm::UNetOptions o = ddpm::ddpm_cifar10_unet();
  o.image_size = 16;
  o.channels = 32;
  o.channel_mult = {1, 2};
  o.num_res_blocks = 2;
  o.attention_resolutions = {8};
  return o;
}

ddpm::UNetOptions small_gray() {  // three levels down to 7x7 with attention there, 28x28x1
  ddpm::UNetOptions o = ddpm::ddpm_cifar10_unet();
  o.image_size = 28;
  o.in_channels = o.out_channels = 1;
  o.channels = 32;
  o.channel_mult = {1, 2, 2};
  o.num_res_blocks = 1;
  o.attention_resolutions = {14, 7};
  return o;
}

// A model whose every parameter is moved off its init (the zero-initialized output convolution, the norms' unit
// scales and zero shifts): an inference form that dropped or swapped one would not match.
ddpm::UNet perturbed(const ddpm::UNetOptions& options, uint64_t seed) {
  torch::manual_seed(seed);
  ddpm::UNet model(options);
  torch::NoGradGuard no_grad;
  for (torch::Tensor& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
  model->eval();
  return model;
}

double max_relative_difference(const torch::Tensor& a, const torch::Tensor& reference) {
  return (a - reference).abs().max().item<double>() / reference.abs().max().item<double>();
}

TEST(UNetInference, EqualsTheForwardUpToRoundOff) {
  for (ddpm::UNetOptions options : {small_rgb(), small_gray()}) {
    for (const bool channels_last : {false, true}) {
      // Both downsampling paddings: Ho et al.'s (0, explicit) with NCHW weights, improved-diffusion's with NHWC.
      options.downsample_padding = channels_last ? 1 : 0;
      ddpm::UNet model = perturbed(options, 3);
      if (channels_last) ddpm::use_channels_last(model);
      const ddpm::UNetInference inference(model);
      torch::Tensor x = torch::randn({3, options.in_channels, options.image_size, options.image_size});
      if (channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
      const torch::Tensor t = torch::tensor({0, 17, 999}, torch::kLong);
      torch::Tensor reference;
      {
        torch::NoGradGuard no_grad;
        reference = model->forward(x, t);
      }
      const torch::Tensor eps = inference.forward(x, t);
      ASSERT_EQ(eps.sizes(), x.sizes());
      if (options.in_channels > 1) {  // (one channel: the two layouts are the same memory)
        EXPECT_EQ(eps.is_contiguous(torch::MemoryFormat::ChannelsLast), channels_last);
      }
      ASSERT_GT(reference.abs().max().item<double>(), 0.1);  // a model that computes something
      EXPECT_LT(max_relative_difference(eps, reference), 1e-4)
          << "side " << options.image_size << ", channels_last " << channels_last << ", padding " << options.downsample_padding;
      // The tolerance is far below what a wrong input makes: the neighbouring timesteps' ε.
      torch::Tensor shifted;
      {
        torch::NoGradGuard no_grad;
        shifted = model->forward(x, t + 1);
      }
      EXPECT_GT(max_relative_difference(shifted, reference), 1e-3);
    }
  }
}

TEST(UNetInference, AnImagesEpsDoesNotDependOnItsBatch) {
  const ddpm::UNetOptions options = small_rgb();
  const ddpm::UNetInference inference(perturbed(options, 5));
  const torch::Tensor x = torch::randn({4, 3, 16, 16});
  for (const torch::Tensor& t : {torch::full({4}, 250, torch::kLong), torch::tensor({3, 250, 3, 999}, torch::kLong)}) {
    const torch::Tensor together = inference.forward(x, t);
    for (int64_t i = 0; i < 4; ++i) {
      const torch::Tensor alone = inference.forward(x.narrow(0, i, 1), t.narrow(0, i, 1));
      EXPECT_TRUE(torch::equal(alone, together.narrow(0, i, 1))) << "image " << i << ", t " << t;
    }
    const torch::Tensor pair = inference.forward(x.narrow(0, 2, 2), t.narrow(0, 2, 2));
    EXPECT_TRUE(torch::equal(pair, together.narrow(0, 2, 2)));
  }
}

TEST(UNetInference, RefusesWhatItCannotTake) {
  const ddpm::UNetOptions options = small_rgb();
  ddpm::UNet model = perturbed(options, 7);
  const ddpm::UNetInference inference(model);
  const torch::Tensor t = torch::tensor({1, 2}, torch::kLong);
  EXPECT_THROW(inference.forward(torch::randn({2, 3, 8, 8}), t), c10::Error);                         // another side
  EXPECT_THROW(inference.forward(torch::randn({2, 1, 16, 16}), t), c10::Error);                       // channels
  EXPECT_THROW(inference.forward(torch::randn({2, 3, 16, 16}, torch::kBFloat16), t), c10::Error);     // dtype
  EXPECT_THROW(inference.forward(torch::randn({2, 3, 16, 16}), torch::tensor({1}, torch::kLong)), c10::Error);
  model->train();  // dropout on: not the function it computes
  EXPECT_THROW(inference.forward(torch::randn({2, 3, 16, 16}), t), c10::Error);
  EXPECT_TRUE(ddpm::UNetInference::supported(torch::kCPU));
  EXPECT_FALSE(ddpm::UNetInference::supported(torch::Device(torch::kCUDA, 0)));
}

}  // namespace
