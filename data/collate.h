// Gathers a planned batch out of the in-memory uint8 images.
#pragma once
#include <functional>

#include "data/batch.h"
#include "data/batch_planner.h"
#include "data/image_dataset.h"

namespace ddpm {

// Gather, mirror and convert (exactly pixels_to_model_range) in one tight single-threaded loop per batch:
// per-pixel torch ops would be orders of magnitude slower, and the loader's threads are the parallelism.
Batch collate(const ImageDataset& dataset, const BatchPlan& plan);

// The loader's pluggable collate step (tests put in one that throws or stalls).
using CollateFn = std::function<Batch(const ImageDataset&, const BatchPlan&)>;

}  // namespace ddpm
