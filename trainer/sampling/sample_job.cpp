#include "trainer/sampling/sample_job.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "data/npz.h"
#include "distributed/console.h"
#include "distributed/stop_signal.h"
#include "trainer/eval/image_grid.h"
#include "trainer/sampling/rank_progress.h"
#include "trainer/sampling/shard_store.h"

namespace ddpm {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxGridImages = 4096;  // a grid is for looking at: beyond this, an .npz or --png-dir

// The process sampled: β (so the schedule and the respacing) and the model variance (a fixed table, or the name of a
// learned kind, whose table is all NaN; the fixed kinds hash as in earlier builds, so their jobs still resume).
uint32_t diffusion_crc(const GaussianDiffusion& diffusion) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const torch::Tensor& table : {diffusion.betas(), diffusion.model_log_variance_table(), diffusion.timestep_map()}) {
    const torch::Tensor bytes = table.cpu().contiguous();
    crc = crc32_z(crc, static_cast<const Bytef*>(bytes.data_ptr()), static_cast<z_size_t>(bytes.nbytes()));
  }
  if (diffusion.learns_variance()) {
    const std::string kind = to_string(diffusion.model_variance());
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(kind.data()), static_cast<z_size_t>(kind.size()));
  }
  return static_cast<uint32_t>(crc);
}

std::string identity_json(const SampleJob& job, const SampleSource& source, UNet& model,
                          const GaussianDiffusion& diffusion) {
  const UNetOptions& o = model->options();
  const torch::Tensor map = diffusion.timestep_map().cpu().contiguous();
  nlohmann::json identity;
  identity["kind"] = "ddpm sample shards";
  identity["version"] = 1;
  identity["weights_crc32"] = source.weights_crc;  // what the weights are; where they come from is in the notes
  identity["model"] = source.model_signature;      // the architecture: the same weights in another layout differ
  identity["diffusion_crc32"] = diffusion_crc(diffusion);
  identity["device"] = source.device_type;
  identity["seed"] = job.seed;
  identity["sampler"] = sampler_kind_name(job.sampler.kind);
  if (job.sampler.kind == SamplerKind::kDdim) identity["eta"] = job.sampler.eta;
  identity["clip_denoised"] = job.sampler.clip_denoised;
  identity["trained_timesteps"] = diffusion.original_num_timesteps();
  identity["timesteps"] = std::vector<int64_t>(map.data_ptr<int64_t>(), map.data_ptr<int64_t>() + map.numel());
  identity["image"] = {o.image_size, o.image_size, o.in_channels};  // H, W, C
  identity["bf16"] = job.sampler.bf16;
  identity["channels_last"] = job.sampler.channels_last;
  return identity.dump();
}

void check_request(const SampleJob& job) {
  if (job.npz_output.empty() && job.grid_output.empty() && job.png_dir.empty()) {
    throw std::runtime_error("nothing to write: give --output (.npz or a .png grid) and/or --png-dir");
  }
  if (!job.npz_output.empty() && fs::exists(job.npz_output)) {
    std::string message = job.npz_output + " exists: it is left alone (remove it, or choose another --output)";
    if (fs::exists(sample_work_dir(job))) {
      message += "; if it is this job's result, its work folder " + sample_work_dir(job).string() + " was left behind";
    }
    throw std::runtime_error(message);
  }
  if (!job.grid_output.empty() && job.num_images > kMaxGridImages) {
    throw std::runtime_error("a PNG grid of " + std::to_string(job.num_images) + " images (at most " +
                             std::to_string(kMaxGridImages) + "): write an .npz or use --png-dir");
  }
  if (!job.png_dir.empty() && fs::exists(job.png_dir) && !fs::is_directory(job.png_dir)) {
    throw std::runtime_error("--png-dir " + job.png_dir + " exists and is not a directory");
  }
}

// Rank 0 opens the work folder and verifies what it holds; every rank learns the shard size and which shards are done.
struct Plan {
  int64_t shard_size = 0;
  std::vector<ShardRange> ranges;
  std::vector<bool> done;
};

Plan plan_shards(const SampleJob& job, ShardStore& store, const MpiContext& mpi) {
  std::string error;
  std::string encoded;
  if (mpi.rank() == 0) {
    try {
      check_request(job);
      const int64_t shard_size = store.open_or_create();
      std::vector<std::string> warnings;
      const std::vector<bool> done = store.verify(shard_ranges(job.num_images, shard_size), warnings);
      for (const std::string& w : warnings) print_line("ddpm: warning: " + w);
      encoded = std::to_string(shard_size) + ":";
      for (const bool d : done) encoded += d ? '1' : '0';
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  mpi.throw_if_any_failed(error, "rank 0 could not prepare the sampling work folder");
  encoded = mpi.broadcast_string(encoded);
  Plan plan;
  const size_t colon = encoded.find(':');
  plan.shard_size = std::stoll(encoded.substr(0, colon));
  plan.ranges = shard_ranges(job.num_images, plan.shard_size);
  for (size_t i = colon + 1; i < encoded.size(); ++i) plan.done.push_back(encoded[i] == '1');
  return plan;
}

std::string png_name(int64_t index) {
  char name[32];
  std::snprintf(name, sizeof(name), "%06lld.png", static_cast<long long>(index));
  return name;
}

// Every output from the shards: rank 0 the .npz and the grid, every rank the PNGs of its share of the shards.
void assemble(const SampleJob& job, const ShardStore& store, const Plan& plan, const std::vector<int64_t>& hwc,
              const MpiContext& mpi) {
  std::string error;
  if (!job.png_dir.empty()) {
    try {
      if (mpi.rank() == 0) fs::create_directories(job.png_dir);
    } catch (const std::exception& e) {
      error = "cannot create --png-dir " + job.png_dir + ": " + e.what();
    }
    // Also the barrier: the folder exists before any rank writes into it.
    mpi.throw_if_any_failed(error, "rank 0 could not create the PNG folder (the shards are kept; rerun to retry)");
  }
  try {
    if (!job.png_dir.empty()) {
      for (size_t s = static_cast<size_t>(mpi.rank()); s < plan.ranges.size(); s += static_cast<size_t>(mpi.world_size())) {
        const torch::Tensor images = store.read(plan.ranges[s]).permute({0, 3, 1, 2});
        for (int64_t i = 0; i < images.size(0); ++i) {
          write_png((fs::path(job.png_dir) / png_name(plan.ranges[s].start + i)).string(), images[i].contiguous());
        }
      }
    }
    if (mpi.rank() == 0 && !job.npz_output.empty()) {
      NpzWriter writer(job.npz_output);
      writer.begin("arr_0", NpyDtype::kUint8, {job.num_images, hwc[0], hwc[1], hwc[2]});
      for (const ShardRange& range : plan.ranges) {
        const torch::Tensor images = store.read(range);
        writer.write(images.data_ptr<uint8_t>(), static_cast<size_t>(images.numel()));
      }
      writer.end();
      writer.commit();
    }
    if (mpi.rank() == 0 && !job.grid_output.empty()) {
      std::vector<torch::Tensor> all;
      for (const ShardRange& range : plan.ranges) all.push_back(store.read(range).permute({0, 3, 1, 2}));
      write_png(job.grid_output, make_grid(torch::cat(all).contiguous()));
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  mpi.throw_if_any_failed(error, "another rank failed to write the samples (the shards are kept; rerun to retry)");
}

}  // namespace

fs::path sample_work_dir(const SampleJob& job) {
  const std::string base = !job.npz_output.empty() ? job.npz_output : !job.grid_output.empty() ? job.grid_output : job.png_dir;
  fs::path path = fs::absolute(base).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();  // "dir/"
  return path.parent_path() / (path.filename().string() + ".shards");
}

uint32_t weights_crc(UNet& model) {
  uLong crc = crc32(0L, Z_NULL, 0);
  torch::NoGradGuard no_grad;
  const auto add = [&crc](const torch::Tensor& tensor) {
    const torch::Tensor bytes = tensor.detach().to(torch::kCPU).contiguous();
    crc = crc32_z(crc, static_cast<const Bytef*>(bytes.data_ptr()), static_cast<z_size_t>(bytes.nbytes()));
  };
  for (const torch::Tensor& p : model->parameters()) add(p);
  for (const torch::Tensor& b : model->buffers()) add(b);
  return static_cast<uint32_t>(crc);
}

SampleJobResult run_sample_job(const SampleJob& job, const SampleSource& source, UNet& model,
                               const GaussianDiffusion& diffusion, const MpiContext& mpi, const torch::Device& device) {
  const UNetOptions& o = model->options();
  const std::vector<int64_t> hwc = {o.image_size, o.image_size, o.in_channels};
  const nlohmann::json notes = {{"weights", source.weights}, {"num_images", job.num_images}};
  // A new job's shards: a batch each, but no fewer shards than ranks (a rank with none would idle); a resumed job
  // keeps its manifest's size.
  const int64_t per_rank = (job.num_images + mpi.world_size() - 1) / mpi.world_size();
  ShardStore store(sample_work_dir(job), identity_json(job, source, model, diffusion), notes.dump(),
                   std::min(job.batch_size, per_rank));
  const Plan plan = plan_shards(job, store, mpi);
  SampleJobResult result;
  result.work_dir = store.dir();
  result.shards = static_cast<int64_t>(plan.ranges.size());
  std::vector<size_t> missing;
  int64_t images_found = 0;
  for (size_t s = 0; s < plan.ranges.size(); ++s) {
    if (plan.done[s]) {
      ++result.shards_found;
      images_found += plan.ranges[s].count;
    } else {
      missing.push_back(s);
    }
  }
  if (mpi.rank() == 0) {
    std::cout << "sampling " << job.num_images << " images (" << describe_sampler(job.sampler, diffusion) << ", seed "
              << job.seed << ") on " << mpi.world_size() << " rank(s): " << result.shards << " shards of "
              << plan.shard_size << " in " << store.dir().string();
    if (result.shards_found > 0) std::cout << ", " << result.shards_found << " found done (" << images_found << " images)";
    std::cout << std::endl;
  }
  // The missing shards in turn over the ranks: every rank's share within one shard of the others'.
  bool stopped = false;
  {
    RankProgress progress(mpi, job.progress, "sampling", static_cast<double>(images_found),
                          static_cast<double>(job.num_images), "images");
    double mine_done = 0.0;
    try {
      for (size_t k = static_cast<size_t>(mpi.rank()); k < missing.size(); k += static_cast<size_t>(mpi.world_size())) {
        const ShardRange range = plan.ranges[missing[k]];
        const double before = mine_done;
        const torch::Tensor images =
            sample_images(model, diffusion, range.count, job.seed, std::min(job.batch_size, range.count), device, job.sampler,
                          range.start, [&](double done) { progress.local(before + done); });
        store.write(range, images);
        mine_done = before + static_cast<double>(range.count);
        progress.local(mine_done);
      }
    } catch (const StopRequested&) {
      stopped = true;
    }
    stopped = progress.finish(stopped);
  }
  if (stopped) {
    std::vector<std::string> unused;
    result.stopped = true;
    if (mpi.rank() == 0) {
      const std::vector<bool> done = store.verify(plan.ranges, unused);
      for (const bool d : done) result.shards_done += d ? 1 : 0;
    }
    return result;
  }
  result.shards_done = result.shards;
  assemble(job, store, plan, hwc, mpi);
  if (mpi.rank() == 0) store.remove_all();
  return result;
}

}  // namespace ddpm
