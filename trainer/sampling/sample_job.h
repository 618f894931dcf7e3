// `ddpm sample` at scale: num_images images sharded across the ranks, each keyed by (seed, image index) so that the
// result is the same for any number of ranks and any batch size, written as an .npz (guided-diffusion's evaluator's
// layout: `arr_0`, uint8 N×H×W×C), one PNG per image named by its index, and/or a PNG grid. Finished shards are kept
// in a work folder beside the output, so an interrupted job resumes where it stopped; outputs appear only when every
// image is done (temporary name, then rename).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "distributed/mpi_context.h"
#include "trainer/diffusion/diffusion.h"
#include "trainer/eval/sampler.h"
#include "trainer/model/unet.h"
#include "trainer/monitoring/progress.h"

namespace ddpm {

struct SampleJob {
  int64_t num_images = 64;
  uint64_t seed = 0;
  int64_t batch_size = 256;     // images per model call; also the shard size of a new job (at most N / ranks)
  std::string steps;            // the respacing spec (respace.h); "" for every step
  SamplerOptions sampler;
  std::string npz_output;       // "" for none
  std::string grid_output;      // "" for none
  std::string png_dir;          // "" for none
  ProgressMode progress = ProgressMode::kAuto;
};

// What the images depend on besides (seed, index): the request's identity, as the work folder records it.
struct SampleSource {
  std::string weights;        // where the weights come from ("EMA 0.9999 weights of <file> (step N)")
  uint32_t weights_crc = 0;   // of every parameter's bytes, in order: the same file name with other weights differs
  std::string device_type;    // cpu | cuda: the same seed gives other bits on another kind of device
  std::string model_signature;  // the model's config keys (model_shape_signature)
};

struct SampleJobResult {
  bool stopped = false;
  int64_t shards = 0, shards_found = 0, shards_done = 0;  // all, found intact at the start, intact now
  std::filesystem::path work_dir;
};

// The work folder of a request: beside the .npz, else beside the grid, else beside the PNG folder.
std::filesystem::path sample_work_dir(const SampleJob& job);

// CRC-32 of the model's parameters and buffers, in order.
uint32_t weights_crc(UNet& model);

// Collective. Throws on bad requests (an output that exists, a work folder of another request) before sampling;
// a stop request ends it within one model call of every rank with `stopped` set and the finished shards kept.
SampleJobResult run_sample_job(const SampleJob& job, const SampleSource& source, UNet& model,
                               const GaussianDiffusion& diffusion, const MpiContext& mpi, const torch::Device& device);

}  // namespace ddpm
