// What a training run is at a step, and so what its checkpoint holds, in one place:
//   metadata (JSON)  model_shape (what must match to resume, as YAML lines), config (the resolved config),
//                    world_size (ranks that wrote it), loader {epoch, position} (the data order's position)
//   tensors          model/<parameter>, ema_<rate>/<parameter> for every EMA rate, adam/step,
//                    adam/exp_avg/<parameter>, adam/exp_avg_sq/<parameter>, and rng/<rank>/<generator> for every
//                    rank (generator 0: the CPU's, 1: the CUDA device's), and the tensors of extra_state under their
//                    own names (timestep_sampler/history, timestep_sampler/counts with loss_second_moment).
// Steps count from 1: `step` is the number of completed updates, so the step being trained is step + 1, and the
// checkpoint of step n holds the state after n updates.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "data/loader_state.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/model/unet.h"
#include "trainer/optim/adam.h"
#include "trainer/optim/ema.h"

namespace ddpm {

// What a checkpoint records beside the state: what it must match to be resumed, and by whom it was written.
struct CheckpointLabel {
  std::string model_shape;  // "key: value" lines (builders' model_shape_signature)
  std::string config;       // the resolved config as YAML
  int world_size = 1;
};

// Throws std::runtime_error ("it holds a model of another shape: ...", both signatures) unless the checkpoint's
// recorded model shape is `expected` (the signature of the config that reads it), for a reader of its weights.
void require_model_shape(const Checkpoint& checkpoint, const std::string& expected);

class TrainState {
 public:
  // Takes the model as built (and moved to its device); Adam and the EMA shadows start from its parameters.
  TrainState(UNet model, const AdamOptions& adam, const std::vector<double>& ema_rates);

  UNet model;
  std::vector<torch::Tensor> parameters;  // the model's, in named_parameters order
  std::vector<std::string> names;         // their names
  Adam optimizer;
  ExponentialMovingAverage ema;
  int64_t step = 0;  // completed steps
  LoaderState loader;
  // The state of other parts of training (the timestep sampler), registered by them: saved under its name and
  // restored in place. A checkpoint without a name (an earlier build's, or a run with another sampler) leaves that
  // tensor as it is and lists the name in absent_extra_state.
  std::vector<std::pair<std::string, torch::Tensor>> extra_state;
  std::vector<std::string> absent_extra_state;

  // The checkpoint of this state (CPU tensors). `rank_rng`: each rank's pack_generator_states(), rank by rank.
  Checkpoint to_checkpoint(const CheckpointLabel& label, const std::vector<std::string>& rank_rng) const;
  // Loads model, EMA, Adam, step and loader position, and this rank's generators when the checkpoint was written
  // by as many ranks. Throws std::runtime_error when its model_shape differs from `label`'s (naming each key that
  // differs and `run_dir`), or a tensor is missing or mis-shaped. Returns the world size that wrote it.
  int restore(const Checkpoint& checkpoint, const CheckpointLabel& label, const std::string& run_dir, int rank,
              const torch::Device& device);
};

}  // namespace ddpm
