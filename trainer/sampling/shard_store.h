// The work folder of a sharded sampling job: a manifest saying which request it belongs to, and one verified file
// per finished shard of images. It is what lets an interrupted job resume where it stopped: a shard is kept only if
// its file is intact (each .npz entry's CRC-32) and belongs to the same request.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ddpm {

struct ShardRange {
  int64_t start = 0;
  int64_t count = 0;
};

// Images [0, num_images) in shards of shard_size (the last one shorter).
std::vector<ShardRange> shard_ranges(int64_t num_images, int64_t shard_size);

class ShardStore {
 public:
  // `identity`: the JSON object naming everything the images depend on (the weights' CRC, sampler, seed, shape,
  // precision); `notes`: a JSON object stored in the manifest for people (where the weights come from), not compared.
  ShardStore(std::filesystem::path dir, std::string identity, std::string notes, int64_t shard_size);

  // Rank 0, before any sampling: creates the folder and its manifest, or checks that the manifest found there is of
  // this request (else throws, naming the first key that differs: nothing is removed). Returns the shard size to
  // use: the manifest's on a resume (a shard's images do not depend on it, but its file's range does).
  int64_t open_or_create();
  // The shards of `ranges` with an intact file of this request. A file that is not (truncated, corrupt, of
  // another request) is reported in `warnings` and removed, so that it is sampled again.
  std::vector<bool> verify(const std::vector<ShardRange>& ranges, std::vector<std::string>& warnings) const;

  // images: uint8 [n, C, H, W]; stored as [n, H, W, C] (the layout of the final .npz). Atomic.
  void write(const ShardRange& range, const torch::Tensor& images) const;
  // uint8 [n, H, W, C] of a shard written by write(); throws naming the file when it is not intact.
  torch::Tensor read(const ShardRange& range) const;

  void remove_all() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path file(const ShardRange& range) const;
  std::string shard_identity(const ShardRange& range) const;
  // Empty when intact and of this request, else why not.
  std::string check(const ShardRange& range, torch::Tensor* images) const;

  std::filesystem::path dir_;
  std::string identity_;
  std::string notes_;
  int64_t shard_size_;
};

}  // namespace ddpm
