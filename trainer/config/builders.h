// The config turned into the objects a run is made of. The one place that maps config keys to library options.
#pragma once
#include "data/data_loader.h"
#include "data/dataset_spec.h"
#include "trainer/config/config.h"
#include "trainer/diffusion/diffusion.h"
#include "trainer/model/unet.h"
#include "trainer/optim/lr_schedule.h"

namespace ddpm {

UNetOptions unet_options(const Config& config);
GaussianDiffusion make_diffusion(const Config& config);
// train.lr with train.warmup_steps: the rate of every step, for the step and for the log.
WarmupSchedule lr_schedule(const Config& config);
DatasetSpec dataset_spec(const Config& config, DataSplit split);
LoaderOptions loader_options(const Config& config, int64_t rank, int64_t world_size, const torch::Device& device);
// run.device resolved on this rank: auto picks CUDA device (local rank mod visible devices) when CUDA is
// available, else the CPU. Throws for cuda on a machine (or build) without it. Also applies the config's kernel
// choices (train.cudnn_benchmark, train.deterministic) to the process, before any kernel runs.
torch::Device select_device(const Config& config, int local_rank);

}  // namespace ddpm
