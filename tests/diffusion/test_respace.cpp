// Respacing against improved-diffusion's respace.py and DDIM's step against its closed forms.
//
// The expected kept steps and betas below were produced by the reference definitions (improved-diffusion's
// space_timesteps and SpacedDiffusion.__init__, with its betas: np.linspace for linear, betas_for_alpha_bar for
// cosine), run in numpy float64; the first example is the one respace.py's docstring gives.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/diffusion/diffusion.h"
#include "trainer/diffusion/respace.h"
#include "trainer/diffusion/schedule.h"

namespace ddpm {
namespace {

struct SpacingCase {
  int64_t T;
  std::string spec;
  std::vector<int64_t> kept;
};

const std::vector<SpacingCase>& reference_spacings() {
  static const std::vector<SpacingCase> cases = {
      {300, "10,15,20", {0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 107, 114, 121, 128, 135, 142, 149, 157, 164, 171, 178, 185, 192, 199, 200, 205, 210, 216, 221, 226, 231, 236, 242, 247, 252, 257, 263, 268, 273, 278, 283, 289, 294, 299}},
      {1000, "ddim50", {0, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220, 240, 260, 280, 300, 320, 340, 360, 380, 400, 420, 440, 460, 480, 500, 520, 540, 560, 580, 600, 620, 640, 660, 680, 700, 720, 740, 760, 780, 800, 820, 840, 860, 880, 900, 920, 940, 960, 980}},
      {1000, "250", {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76, 80, 84, 88, 92, 96, 100, 104, 108, 112, 116, 120, 124, 128, 132, 136, 140, 144, 148, 152, 156, 160, 164, 169, 173, 177, 181, 185, 189, 193, 197, 201, 205, 209, 213, 217, 221, 225, 229, 233, 237, 241, 245, 249, 253, 257, 261, 265, 269, 273, 277, 281, 285, 289, 293, 297, 301, 305, 309, 313, 317, 321, 325, 329, 333, 337, 341, 345, 349, 353, 357, 361, 365, 369, 373, 377, 381, 385, 389, 393, 397, 401, 405, 409, 413, 417, 421, 425, 429, 433, 437, 441, 445, 449, 453, 457, 461, 465, 469, 473, 477, 481, 485, 489, 493, 497, 502, 506, 510, 514, 518, 522, 526, 530, 534, 538, 542, 546, 550, 554, 558, 562, 566, 570, 574, 578, 582, 586, 590, 594, 598, 602, 606, 610, 614, 618, 622, 626, 630, 634, 638, 642, 646, 650, 654, 658, 662, 666, 670, 674, 678, 682, 686, 690, 694, 698, 702, 706, 710, 714, 718, 722, 726, 730, 734, 738, 742, 746, 750, 754, 758, 762, 766, 770, 774, 778, 782, 786, 790, 794, 798, 802, 806, 810, 814, 818, 822, 826, 830, 835, 839, 843, 847, 851, 855, 859, 863, 867, 871, 875, 879, 883, 887, 891, 895, 899, 903, 907, 911, 915, 919, 923, 927, 931, 935, 939, 943, 947, 951, 955, 959, 963, 967, 971, 975, 979, 983, 987, 991, 995, 999}},
      {100, "10", {0, 11, 22, 33, 44, 55, 66, 77, 88, 99}},
      {1000, "ddim25", {0, 40, 80, 120, 160, 200, 240, 280, 320, 360, 400, 440, 480, 520, 560, 600, 640, 680, 720, 760, 800, 840, 880, 920, 960}},
      {10, "3,1,2", {0, 2, 3, 4, 7, 9}},
      {1000, "50,1,100", {0, 7, 14, 20, 27, 34, 41, 48, 54, 61, 68, 75, 82, 88, 95, 102, 109, 116, 122, 129, 136, 143, 150, 156, 163, 170, 177, 183, 190, 197, 204, 211, 217, 224, 231, 238, 245, 251, 258, 265, 272, 279, 285, 292, 299, 306, 313, 319, 326, 333, 334, 667, 670, 674, 677, 680, 684, 687, 690, 694, 697, 701, 704, 707, 711, 714, 717, 721, 724, 727, 731, 734, 737, 741, 744, 747, 751, 754, 758, 761, 764, 768, 771, 774, 778, 781, 784, 788, 791, 794, 798, 801, 804, 808, 811, 815, 818, 821, 825, 828, 831, 835, 838, 841, 845, 848, 851, 855, 858, 862, 865, 868, 872, 875, 878, 882, 885, 888, 892, 895, 898, 902, 905, 908, 912, 915, 919, 922, 925, 929, 932, 935, 939, 942, 945, 949, 952, 955, 959, 962, 965, 969, 972, 976, 979, 982, 986, 989, 992, 996, 999}},
  };
  return cases;
}

TEST(Respace, KeptStepsEqualImprovedDiffusions) {
  for (const SpacingCase& c : reference_spacings()) {
    EXPECT_EQ(space_timesteps(c.T, c.spec), c.kept) << "T " << c.T << ", steps '" << c.spec << "'";
  }
}

TEST(Respace, EmptySpecKeepsEveryStep) {
  const std::vector<int64_t> all = space_timesteps(7, "");
  EXPECT_EQ(all, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(Respace, ImpossibleSpecsAreRefusedByName) {
  const auto message = [](int64_t T, const std::string& spec) {
    try {
      space_timesteps(T, spec);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(40, "ddim39").find("no integer stride gives exactly 39 of 40 steps"), std::string::npos);
  EXPECT_NE(message(40, "50").find("section 1 has 40 steps, fewer than the 50 asked"), std::string::npos);
  EXPECT_NE(message(40, "10,x").find("'x' is not a step count"), std::string::npos);
  EXPECT_NE(message(40, "0").find("at least 1 step"), std::string::npos);
  EXPECT_NE(message(40, "-3").find("is not a step count"), std::string::npos);
  EXPECT_NE(message(40, "10,").find("'' is not a step count"), std::string::npos);
}

void expect_betas(const GaussianDiffusion& spaced, const std::vector<double>& expected, const std::string& what) {
  ASSERT_EQ(spaced.num_timesteps(), static_cast<int64_t>(expected.size())) << what;
  const torch::Tensor betas = spaced.betas();
  for (size_t i = 0; i < expected.size(); ++i) {
    const double got = betas[static_cast<int64_t>(i)].item<double>();
    // Relative 1e-12: float64 round-off of the schedule's own formula (numpy's linspace steps differently), far
    // below what a kept step off by one changes (≥ 1e-3 relative).
    EXPECT_NEAR(got, expected[i], 1e-12 * expected[i]) << what << ", respaced index " << i;
  }
}

TEST(Respace, BetasEqualImprovedDiffusions_linear_300_10_15_20) {
  const GaussianDiffusion base(make_beta_schedule(BetaSchedule::kLinear, 300), ModelVariance::kFixedLarge);
  const std::vector<double> expected = {0.00033333333333329662, 0.018159862843474706, 0.044239945420856297, 0.069688726282472135, 0.094519992199326608, 0.11874726165934424, 0.14238378944659813, 0.16544257115337835, 0.18793634762592559, 0.20987760934463884, 0.022518394648829543, 0.15277516092655308, 0.16216093466949644, 0.17145744298953702, 0.1806653944927582, 0.1897854932780394, 0.19881843895859175, 0.20776492668342439, 0.24417212858273418, 0.22664804388647009, 0.23532728271373471, 0.24392289639651366, 0.25243555746158575, 0.26086593410189707, 0.2692146901975413, 0.044703455964325456, 0.2071746442302127, 0.21177015105863239, 0.25415811225537777, 0.22180527319402787, 0.22633277102728866, 0.23083917169438306, 0.23532454901254529, 0.28085647446341466, 0.24511873959151209, 0.24953733623821783, 0.25393521768824323, 0.30183471496992764, 0.26353799849731308, 0.26787008051656691, 0.27218175246539744, 0.27647308654854674, 0.32709887097751733, 0.2858427869773067, 0.29006952312152467};
  expect_betas(respace(base, "10,15,20"), expected, "linear T=300 steps 10,15,20");
}

TEST(Respace, BetasEqualImprovedDiffusions_cosine_1000_ddim50) {
  const GaussianDiffusion base(make_beta_schedule(BetaSchedule::kCosine, 1000), ModelVariance::kFixedLarge);
  const std::vector<double> expected = {4.128422482196914e-05, 0.0018445632572497983, 0.0037860844732395815, 0.0057311899677680023, 0.0076836822849282171, 0.009647421736410644, 0.011626357225987372, 0.013624558566145861, 0.015646250858873945, 0.017695851573726995, 0.019778011037872467, 0.021897657158714945, 0.024060045334967972, 0.026270814683542532, 0.028536051926150496, 0.030862364552889821, 0.03325696522563093, 0.035727769822313404, 0.03828351208147307, 0.040933878520938771, 0.043689668225075917, 0.046562983288173432, 0.049567457259792835, 0.052718530988683954, 0.056033787983843286, 0.059533365056963494, 0.063240458941126398, 0.067181956318939862, 0.071389224006143337, 0.075899109064031078, 0.080755217076442731, 0.086009563363546038, 0.091724730633938267, 0.097976724049739561, 0.10485880153268157, 0.11248669103531184, 0.12100581750416095, 0.13060150295566797, 0.14151366826137324, 0.15405853159831395, 0.16866150805142577, 0.18590865794828326, 0.20663006985907151, 0.23204076382106575, 0.26399081608577513, 0.30543613240294976, 0.36138822181802743, 0.44098833410266158, 0.56236252926413721, 0.762433147957152};
  expect_betas(respace(base, "ddim50"), expected, "cosine T=1000 steps ddim50");
}

// The respaced process keeps ᾱ at the kept steps (that is what defines it) and feeds the model the original t.
TEST(Respace, KeepsAlphaBarAndMapsTimesteps) {
  const GaussianDiffusion base(make_beta_schedule(BetaSchedule::kLinear, 1000), ModelVariance::kFixedSmall);
  const std::vector<int64_t> kept = space_timesteps(1000, "ddim50");
  const GaussianDiffusion spaced = respace(base, kept);
  EXPECT_TRUE(spaced.respaced());
  EXPECT_EQ(spaced.original_num_timesteps(), 1000);
  EXPECT_EQ(spaced.model_variance(), ModelVariance::kFixedSmall);
  for (size_t i = 0; i < kept.size(); ++i) {
    const int64_t index = static_cast<int64_t>(i);
    EXPECT_NEAR(spaced.alphas_cumprod()[index].item<double>(), base.alphas_cumprod()[kept[i]].item<double>(), 1e-15);
    EXPECT_EQ(spaced.timestep_map()[index].item<int64_t>(), kept[i]);
  }
  const torch::Tensor t = torch::tensor(std::vector<int64_t>{0, 1, 49});
  EXPECT_TRUE(torch::equal(spaced.model_timesteps(t), torch::tensor(std::vector<int64_t>{0, 20, 980})));
  // Respacing a respaced process composes the maps.
  const GaussianDiffusion twice = respace(spaced, "ddim10");
  EXPECT_EQ(twice.timestep_map()[1].item<int64_t>(), 100);
  EXPECT_EQ(twice.original_num_timesteps(), 1000);
  // No respacing: the identity map, the model called with t itself.
  EXPECT_FALSE(base.respaced());
  EXPECT_TRUE(torch::equal(base.model_timesteps(t), t));
}

// fixed_large on a respaced process uses the respaced β (and β̃_2 at step 1), as SpacedDiffusion does.
TEST(Respace, FixedLargeVarianceUsesTheRespacedBetas) {
  const GaussianDiffusion base(make_beta_schedule(BetaSchedule::kLinear, 1000), ModelVariance::kFixedLarge);
  const GaussianDiffusion spaced = respace(base, "ddim50");
  EXPECT_DOUBLE_EQ(spaced.model_variance_table()[7].item<double>(), spaced.betas()[7].item<double>());
  EXPECT_DOUBLE_EQ(spaced.model_variance_table()[0].item<double>(), spaced.posterior_variance()[1].item<double>());
  EXPECT_GT(spaced.betas()[7].item<double>(), 10 * base.betas()[140].item<double>());
}

torch::Tensor random_like_batch(int64_t seed) {
  torch::manual_seed(static_cast<uint64_t>(seed));
  return torch::randn({4, 3, 5, 5}, torch::kFloat64);
}

// DDIM at η = 1 is the ancestral step with σ² = β̃ (Song et al. 2021, §4.1): same mean, same noise scale.
TEST(Ddim, EtaOneIsTheAncestralStepWithFixedSmallVariance) {
  const GaussianDiffusion diffusion = respace(
      GaussianDiffusion(make_beta_schedule(BetaSchedule::kLinear, 1000), ModelVariance::kFixedSmall), "ddim50");
  const torch::Tensor x_t = random_like_batch(1), eps = random_like_batch(2), noise = random_like_batch(3);
  const torch::Tensor t = torch::tensor(std::vector<int64_t>{49, 30, 5, 1});
  for (const bool clip : {false, true}) {
    const torch::Tensor ddim = diffusion.ddim_sample(diffusion.ddim_tables(1.0), eps, x_t, t, noise, clip);
    const torch::Tensor ancestral = diffusion.p_sample(eps, x_t, t, noise, clip);
    EXPECT_LT((ddim - ancestral).abs().max().item<double>(), 1e-10) << "clip " << clip;
  }
}

// η = 0: x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1}) ε, with no noise; the last step returns x̂_0 itself.
TEST(Ddim, EtaZeroIsDeterministicAndEndsAtThePredictedX0) {
  const GaussianDiffusion diffusion(make_beta_schedule(BetaSchedule::kLinear, 100), ModelVariance::kFixedLarge);
  const torch::Tensor x_t = random_like_batch(4), eps = random_like_batch(5);
  const GaussianDiffusion::DdimTables tables = diffusion.ddim_tables(0.0);
  const torch::Tensor t = torch::tensor(std::vector<int64_t>{60, 60, 60, 60});
  const torch::Tensor a = diffusion.ddim_sample(tables, eps, x_t, t, random_like_batch(6), false);
  const torch::Tensor b = diffusion.ddim_sample(tables, eps, x_t, t, random_like_batch(7), false);
  EXPECT_TRUE(torch::equal(a, b));
  const double ac = diffusion.alphas_cumprod()[60].item<double>(), ac_prev = diffusion.alphas_cumprod()[59].item<double>();
  const torch::Tensor x0 = (x_t - std::sqrt(1 - ac) * eps) / std::sqrt(ac);
  const torch::Tensor expected = std::sqrt(ac_prev) * x0 + std::sqrt(1 - ac_prev) * eps;
  EXPECT_LT((a - expected).abs().max().item<double>(), 1e-12);
  const torch::Tensor t0 = torch::zeros({4}, torch::kLong);
  const torch::Tensor last = diffusion.ddim_sample(tables, eps, x_t, t0, torch::Tensor(), false);
  EXPECT_LT((last - diffusion.predict_x0_from_eps(x_t, t0, eps)).abs().max().item<double>(), 1e-12);
}

// Clipped: x̂_0 in [-1, 1] and ε re-derived from it, so the step is consistent with the clipped x̂_0.
TEST(Ddim, ClippingRederivesEpsFromTheClippedX0) {
  const GaussianDiffusion diffusion(make_beta_schedule(BetaSchedule::kLinear, 100), ModelVariance::kFixedLarge);
  const torch::Tensor x_t = 3 * random_like_batch(8), eps = random_like_batch(9);
  const torch::Tensor t = torch::full({4}, 10, torch::kLong);
  const torch::Tensor step = diffusion.ddim_sample(diffusion.ddim_tables(0.0), eps, x_t, t, torch::Tensor(), true);
  const torch::Tensor x0 = diffusion.predict_x0_from_eps(x_t, t, eps).clamp(-1, 1);
  const torch::Tensor eps_clipped = diffusion.predict_eps_from_x0(x_t, t, x0);
  const double ac_prev = diffusion.alphas_cumprod()[9].item<double>();
  const torch::Tensor expected = std::sqrt(ac_prev) * x0 + std::sqrt(1 - ac_prev) * eps_clipped;
  EXPECT_LT((step - expected).abs().max().item<double>(), 1e-12);
  EXPECT_GT((eps_clipped - eps).abs().max().item<double>(), 1e-3);  // the clip did change something here
  EXPECT_THROW(diffusion.ddim_tables(-0.5), std::invalid_argument);
}

}  // namespace
}  // namespace ddpm
