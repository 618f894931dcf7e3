// Statistics files: a round trip keeps every bit, and what is not pytorch-fid's layout (mu float64 [D], sigma
// float64 [D, D]) is refused naming the file and the key.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include "data/npz.h"
#include "trainer/fid/fid_stats_file.h"

namespace {

namespace fs = std::filesystem;

class FidStatsFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fid_stats_file_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

ddpm::NpyArray array_of(const torch::Tensor& t, ddpm::NpyDtype dtype) {
  ddpm::NpyArray array;
  array.dtype = dtype;
  array.shape.assign(t.sizes().begin(), t.sizes().end());
  const torch::Tensor c = t.contiguous();
  array.bytes.resize(static_cast<size_t>(c.numel() * c.element_size()));
  std::memcpy(array.bytes.data(), c.data_ptr(), array.bytes.size());
  return array;
}

void expect_error(const std::map<std::string, ddpm::NpyArray>& arrays, const std::string& fragment) {
  try {
    ddpm::fid_statistics_from_npz(arrays, "stats.npz");
    ADD_FAILURE() << "no error; expected '" << fragment << "'";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST_F(FidStatsFile, RoundTripKeepsEveryBit) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const torch::Tensor x = torch::randn({30, 5}, gen, torch::kFloat64);
  ddpm::FidStatistics stats{x.mean(0), torch::matmul(x.t(), x) / 29.0, 30, "x"};
  ddpm::save_fid_statistics(path("s.npz"), stats);
  const ddpm::FidStatistics back = ddpm::load_fid_statistics(path("s.npz"));
  EXPECT_TRUE(torch::equal(back.mu, stats.mu));
  EXPECT_TRUE(torch::equal(back.sigma, stats.sigma));
  EXPECT_EQ(back.count, 30);
  EXPECT_EQ(back.source, path("s.npz"));
  const auto arrays = ddpm::read_npz(path("s.npz"));
  EXPECT_EQ(arrays.at("mu").dtype, ddpm::NpyDtype::kFloat64);
  EXPECT_EQ(arrays.at("sigma").shape, (std::vector<int64_t>{5, 5}));
  EXPECT_TRUE(ddpm::holds_fid_statistics(ddpm::NpzFile(path("s.npz")).names()));
}

TEST_F(FidStatsFile, FilesOfOtherToolsHaveNoCount) {
  std::map<std::string, ddpm::NpyArray> arrays;
  arrays["mu"] = array_of(torch::zeros({3}, torch::kFloat64), ddpm::NpyDtype::kFloat64);
  arrays["sigma"] = array_of(torch::eye(3, torch::kFloat64), ddpm::NpyDtype::kFloat64);
  EXPECT_EQ(ddpm::fid_statistics_from_npz(arrays, "pytorch_fid.npz").count, -1);
}

TEST_F(FidStatsFile, RefusesWhatIsNotPytorchFidsLayout) {
  const auto f64 = ddpm::NpyDtype::kFloat64;
  std::map<std::string, ddpm::NpyArray> images;
  images["arr_0"] = array_of(torch::zeros({2, 4, 4, 3}, torch::kUInt8), ddpm::NpyDtype::kUint8);
  EXPECT_FALSE(ddpm::holds_fid_statistics({"arr_0"}));
  expect_error(images, "stats.npz: no array 'mu' (a statistics file holds mu and sigma; this one holds arr_0)");

  std::map<std::string, ddpm::NpyArray> no_sigma;
  no_sigma["mu"] = array_of(torch::zeros({3}, torch::kFloat64), f64);
  expect_error(no_sigma, "stats.npz: no array 'sigma'");

  std::map<std::string, ddpm::NpyArray> float32;
  float32["mu"] = array_of(torch::zeros({3}, torch::kFloat32), ddpm::NpyDtype::kFloat32);
  float32["sigma"] = array_of(torch::eye(3, torch::kFloat64), f64);
  expect_error(float32, "stats.npz: 'mu' is float32 [3], expected float64 [D]");

  std::map<std::string, ddpm::NpyArray> mismatch;
  mismatch["mu"] = array_of(torch::zeros({3}, torch::kFloat64), f64);
  mismatch["sigma"] = array_of(torch::eye(4, torch::kFloat64), f64);
  expect_error(mismatch, "stats.npz: 'sigma' is [4, 4], expected [3, 3] to match 'mu' [3]");

  std::map<std::string, ddpm::NpyArray> flat;
  flat["mu"] = array_of(torch::zeros({3}, torch::kFloat64), f64);
  flat["sigma"] = array_of(torch::zeros({9}, torch::kFloat64), f64);
  expect_error(flat, "stats.npz: 'sigma' is float64 [9], expected float64 [D, D]");

  std::map<std::string, ddpm::NpyArray> bad_count = mismatch;
  bad_count["sigma"] = array_of(torch::eye(3, torch::kFloat64), f64);
  bad_count["count"] = array_of(torch::tensor({2.5}, torch::kFloat64), f64);
  expect_error(bad_count, "stats.npz: 'count' must be one float64 holding a whole number of images");
}

}  // namespace
