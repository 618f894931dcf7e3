#include "trainer/sampling/shard_store.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>

#include "data/data_error.h"
#include "data/npz.h"
#include "trainer/checkpoint/atomic_file.h"

namespace ddpm {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.json";

// Keys of the manifest that are not part of the request's identity.
bool bookkeeping(const std::string& key) { return key == "shard_size" || key == "notes"; }

std::string first_difference(const nlohmann::json& found, const nlohmann::json& wanted) {
  for (auto it = wanted.begin(); it != wanted.end(); ++it) {
    if (!found.contains(it.key())) return it.key() + " (missing there; this request has " + it.value().dump() + ")";
    if (found.at(it.key()) != it.value()) {
      return it.key() + " (" + found.at(it.key()).dump() + " there, " + it.value().dump() + " in this request)";
    }
  }
  for (auto it = found.begin(); it != found.end(); ++it) {
    if (!wanted.contains(it.key()) && !bookkeeping(it.key())) return it.key() + " (only there)";
  }
  return "";
}

}  // namespace

std::vector<ShardRange> shard_ranges(int64_t num_images, int64_t shard_size) {
  std::vector<ShardRange> ranges;
  for (int64_t start = 0; start < num_images; start += shard_size) {
    ranges.push_back({start, std::min(shard_size, num_images - start)});
  }
  return ranges;
}

ShardStore::ShardStore(fs::path dir, std::string identity, std::string notes, int64_t shard_size)
    : dir_(std::move(dir)), identity_(std::move(identity)), notes_(std::move(notes)), shard_size_(shard_size) {}

int64_t ShardStore::open_or_create() {
  const fs::path manifest = dir_ / kManifest;
  const nlohmann::json wanted = nlohmann::json::parse(identity_);
  if (fs::exists(manifest)) {
    nlohmann::json found;
    try {
      std::ifstream in(manifest);
      found = nlohmann::json::parse(in);
      shard_size_ = found.at("shard_size").get<int64_t>();
      if (shard_size_ < 1) throw std::runtime_error("shard_size below 1");
    } catch (const std::exception& e) {
      throw std::runtime_error(manifest.string() + " is not a sampling manifest (" + e.what() +
                               "): remove the folder " + dir_.string() + " or choose another --output");
    }
    const std::string difference = first_difference(found, wanted);
    if (!difference.empty()) {
      throw std::runtime_error(dir_.string() + " holds the shards of another sampling request: " + difference +
                               ". Remove the folder to start over, or choose another --output");
    }
    return shard_size_;
  }
  if (fs::exists(dir_) && !fs::is_empty(dir_)) {
    throw std::runtime_error(dir_.string() + " exists and has no " + kManifest +
                             ": it is not ddpm's, so it is left alone (remove it or choose another --output)");
  }
  fs::create_directories(dir_);
  nlohmann::json manifest_json = wanted;
  manifest_json["shard_size"] = shard_size_;
  manifest_json["notes"] = nlohmann::json::parse(notes_);
  write_text_atomically(manifest, manifest_json.dump(2) + "\n");
  return shard_size_;
}

fs::path ShardStore::file(const ShardRange& range) const {
  char name[64];
  std::snprintf(name, sizeof(name), "shard-%09lld-%lld.npz", static_cast<long long>(range.start),
                static_cast<long long>(range.count));
  return dir_ / name;
}

std::string ShardStore::shard_identity(const ShardRange& range) const {
  nlohmann::json identity = nlohmann::json::parse(identity_);
  identity["shard_start"] = range.start;
  identity["shard_count"] = range.count;
  return identity.dump();
}

std::string ShardStore::check(const ShardRange& range, torch::Tensor* images) const {
  const fs::path path = file(range);
  if (!fs::exists(path)) return "missing";
  std::map<std::string, NpyArray> arrays;
  try {
    arrays = read_npz(path.string());
  } catch (const DataError& e) {
    return e.what();
  }
  const auto identity = arrays.find("identity");
  const auto pixels = arrays.find("images");
  if (identity == arrays.end() || pixels == arrays.end()) return path.string() + ": no 'identity' or 'images' array";
  const std::string found(identity->second.bytes.begin(), identity->second.bytes.end());
  if (found != shard_identity(range)) return path.string() + ": written for another request";
  const nlohmann::json request = nlohmann::json::parse(identity_);
  const std::vector<int64_t> hwc = request.at("image").get<std::vector<int64_t>>();
  const std::vector<int64_t> shape = {range.count, hwc[0], hwc[1], hwc[2]};
  if (pixels->second.dtype != NpyDtype::kUint8 || pixels->second.shape != shape) {
    return path.string() + ": its images are not uint8 of shape [" + std::to_string(range.count) + ", H, W, C]";
  }
  if (images != nullptr) {
    *images = torch::from_blob(pixels->second.bytes.data(), shape, torch::kUInt8).clone();
  }
  return "";
}

std::vector<bool> ShardStore::verify(const std::vector<ShardRange>& ranges, std::vector<std::string>& warnings) const {
  std::vector<bool> intact;
  for (const ShardRange& range : ranges) {
    const std::string problem = check(range, nullptr);
    intact.push_back(problem.empty());
    if (!problem.empty() && problem != "missing") {
      warnings.push_back("shard " + file(range).string() + " is sampled again: " + problem);
      fs::remove(file(range));
    }
  }
  return intact;
}

void ShardStore::write(const ShardRange& range, const torch::Tensor& images) const {
  TORCH_CHECK(images.dim() == 4 && images.size(0) == range.count && images.scalar_type() == torch::kUInt8,
              "a shard of ", range.count, " images, got ", images.sizes());
  const torch::Tensor nhwc = images.permute({0, 2, 3, 1}).contiguous().cpu();
  const std::string identity = shard_identity(range);
  NpzWriter writer(file(range).string());
  writer.begin("images", NpyDtype::kUint8, nhwc.sizes().vec());
  writer.write(nhwc.data_ptr<uint8_t>(), static_cast<size_t>(nhwc.numel()));
  writer.end();
  writer.begin("identity", NpyDtype::kUint8, {static_cast<int64_t>(identity.size())});
  writer.write(identity.data(), identity.size());
  writer.end();
  writer.commit();
}

torch::Tensor ShardStore::read(const ShardRange& range) const {
  torch::Tensor images;
  const std::string problem = check(range, &images);
  if (!problem.empty()) throw std::runtime_error("shard " + file(range).string() + " is no longer intact: " + problem);
  return images;
}

void ShardStore::remove_all() const { fs::remove_all(dir_); }

}  // namespace ddpm
