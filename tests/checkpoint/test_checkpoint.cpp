// Checkpoint files: bit-exact round trip, atomic commit, and rejection of every kind of damage with the
// file named: each truncation of the header, random truncations, single-bit flips, leftovers of writes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "trainer/checkpoint/checkpoint.h"

namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ddpm_ckpt_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static ddpm::Checkpoint sample(int64_t step) {
    torch::manual_seed(step);
    ddpm::Checkpoint c;
    c.step = step;
    c.metadata = R"({"rng":"abc","sampler":{"epoch":3,"index":17}})";
    c.tensors["model.conv.weight"] = torch::randn({8, 3, 3, 3});
    c.tensors["ema_0.9999.conv.weight"] = torch::randn({8, 3, 3, 3});
    c.tensors["optimizer.step"] = torch::tensor({step}, torch::kLong);
    c.tensors["rng.cpu"] = torch::randint(0, 255, {64}, torch::kUInt8);
    return c;
  }
  static std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  static void write_bytes(const fs::path& p, const std::string& bytes) {
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::string error_reading(const fs::path& p) {
    try {
      ddpm::read_checkpoint(p);
    } catch (const ddpm::CheckpointError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(CheckpointTest, RoundTripIsBitExact) {
  const ddpm::Checkpoint original = sample(1234);
  const fs::path path = ddpm::write_checkpoint(dir_, original);
  EXPECT_EQ(path.filename(), "ckpt-000001234.ddpm");
  const ddpm::Checkpoint loaded = ddpm::read_checkpoint(path);
  EXPECT_EQ(loaded.step, 1234);
  EXPECT_EQ(loaded.metadata, original.metadata);
  ASSERT_EQ(loaded.tensors.size(), original.tensors.size());
  for (const auto& [name, tensor] : original.tensors) {
    ASSERT_TRUE(loaded.tensors.count(name)) << name;
    EXPECT_TRUE(torch::equal(loaded.tensors.at(name), tensor)) << name;
    EXPECT_EQ(loaded.tensors.at(name).scalar_type(), tensor.scalar_type()) << name;
  }
  // Nothing but the committed file is left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(CheckpointTest, EveryHeaderTruncationAndRandomTruncationIsRejectedNamingTheFile) {
  const fs::path path = ddpm::write_checkpoint(dir_, sample(7));
  const std::string bytes = read_bytes(path);
  const fs::path damaged = dir_ / "damaged.ddpm";
  std::mt19937 rng(1);
  std::vector<size_t> lengths;
  for (size_t n = 0; n < 64; ++n) lengths.push_back(n);  // every cut inside the header and metadata start
  for (int i = 0; i < 40; ++i) lengths.push_back(std::uniform_int_distribution<size_t>(64, bytes.size() - 1)(rng));
  for (const size_t length : lengths) {
    write_bytes(damaged, bytes.substr(0, length));
    const std::string message = error_reading(damaged);
    EXPECT_NE(message.find("damaged.ddpm"), std::string::npos) << "length " << length << ": " << message;
  }
}

TEST_F(CheckpointTest, SingleBitFlipsAreRejected) {
  const fs::path path = ddpm::write_checkpoint(dir_, sample(8));
  const std::string bytes = read_bytes(path);
  const fs::path damaged = dir_ / "flipped.ddpm";
  std::mt19937 rng(2);
  for (int i = 0; i < 60; ++i) {
    std::string copy = bytes;
    const size_t at = std::uniform_int_distribution<size_t>(0, copy.size() - 1)(rng);
    copy[at] = static_cast<char>(copy[at] ^ (1 << (i % 8)));
    write_bytes(damaged, copy);
    const std::string message = error_reading(damaged);
    EXPECT_NE(message.find("flipped.ddpm"), std::string::npos) << "bit flip at byte " << at;
  }
}

TEST_F(CheckpointTest, NewestValidFallsBackPastCorruptionAndRemovesLeftovers) {
  ddpm::write_checkpoint(dir_, sample(10));
  const fs::path newest = ddpm::write_checkpoint(dir_, sample(20));
  std::string bytes = read_bytes(newest);
  bytes[bytes.size() / 2] ^= 0x10;
  write_bytes(newest, bytes);
  write_bytes(dir_ / ".ckpt-000000030.ddpm.999.tmp", "half a checkpoint");  // an interrupted write
  std::vector<std::string> warnings;
  fs::path loaded_from;
  const std::optional<ddpm::Checkpoint> loaded = ddpm::load_newest_valid_checkpoint(dir_, &warnings, &loaded_from);
  // A reader never touches temp files: one could be a write in progress.
  EXPECT_TRUE(fs::exists(dir_ / ".ckpt-000000030.ddpm.999.tmp"));
  ddpm::remove_interrupted_writes(dir_);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->step, 10);
  EXPECT_EQ(loaded_from.filename(), "ckpt-000000010.ddpm");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("ckpt-000000020.ddpm: checksum mismatch"), std::string::npos) << warnings[0];
  EXPECT_FALSE(fs::exists(dir_ / ".ckpt-000000030.ddpm.999.tmp"));
  EXPECT_TRUE(fs::exists(newest));  // a corrupt file is reported, not deleted: the user may want it
}

TEST_F(CheckpointTest, EmptyDirectoryHasNone) {
  std::vector<std::string> warnings;
  EXPECT_FALSE(ddpm::load_newest_valid_checkpoint(dir_, &warnings).has_value());
  EXPECT_TRUE(warnings.empty());
}

TEST_F(CheckpointTest, PruneKeepsTheNewest) {
  for (int64_t step : {5, 10, 15, 20}) ddpm::write_checkpoint(dir_, sample(step));
  ddpm::prune_checkpoints(dir_, 2, 20);
  const std::vector<fs::path> left = ddpm::list_checkpoints(dir_);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].filename(), "ckpt-000000020.ddpm");
  EXPECT_EQ(left[1].filename(), "ckpt-000000015.ddpm");
}

// A run resumed from step 10 past a corrupt step-20 file writes step 15: pruning must keep the new file
// (not the corrupt one of a higher step) and leave the corrupt one alone.
TEST_F(CheckpointTest, PruneNeverDeletesTheCheckpointJustWritten) {
  ddpm::write_checkpoint(dir_, sample(10));
  const fs::path corrupt = ddpm::write_checkpoint(dir_, sample(20));
  fs::resize_file(corrupt, 100);
  ddpm::write_checkpoint(dir_, sample(15));
  ddpm::prune_checkpoints(dir_, 1, 15);
  EXPECT_TRUE(fs::exists(dir_ / "ckpt-000000015.ddpm"));
  EXPECT_FALSE(fs::exists(dir_ / "ckpt-000000010.ddpm"));
  EXPECT_TRUE(fs::exists(corrupt));
  std::vector<std::string> warnings;
  EXPECT_EQ(ddpm::load_newest_valid_checkpoint(dir_, &warnings)->step, 15);
}

TEST_F(CheckpointTest, OddFileNamesAreIgnored) {
  write_bytes(dir_ / "ckpt-99999999999999999999999.ddpm", "x");
  write_bytes(dir_ / "ckpt-12a.ddpm", "x");
  write_bytes(dir_ / "ckpt-\xe9.ddpm", "x");
  ddpm::write_checkpoint(dir_, sample(3));
  const std::vector<fs::path> found = ddpm::list_checkpoints(dir_);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].filename(), "ckpt-000000003.ddpm");
}

TEST_F(CheckpointTest, UnwritableDirectoryIsAClearErrorAndKeepsThePrevious) {
  const fs::path previous = ddpm::write_checkpoint(dir_, sample(1));
  const std::string before = read_bytes(previous);
  const fs::path missing = dir_ / "no" / "such" / "dir";
  try {
    ddpm::write_checkpoint(missing, sample(2));
    ADD_FAILURE() << "no error";
  } catch (const ddpm::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(previous), before);
}

TEST_F(CheckpointTest, FileRenamedToAnotherStepIsRejected) {
  const fs::path path = ddpm::write_checkpoint(dir_, sample(3));
  fs::rename(path, dir_ / ddpm::checkpoint_file_name(4));
  EXPECT_NE(error_reading(dir_ / ddpm::checkpoint_file_name(4)).find("holds step 3 but is named for step 4"),
            std::string::npos);
}

}  // namespace
