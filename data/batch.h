// What the loader hands the trainer.
#pragma once
#include <torch/torch.h>

#include "data/loader_state.h"

namespace ddpm {

struct Batch {
  torch::Tensor images;   // float32 [B, C, H, W] in [-1, 1] (pixels_to_model_range)
  torch::Tensor labels;   // int64 [B]
  torch::Tensor indices;  // int64 [B], the data set index of each image
  LoaderState after;      // the loader's state once this batch is consumed: what a checkpoint stores
};

}  // namespace ddpm
