// CUDA-graph capture of a step repeated with the same shapes (train.cuda_graph): the whole training step, or one
// denoising step of sampling. A training step of the U-Net is about two thousand kernel launches, each costing
// the host microseconds; with a small model or batch the GPU waits on the host between them. Captured once, the
// step is replayed as one launch.
//
// A graph replays the kernels it captured with the arguments they had, reading and writing the same addresses.
// So everything a step reads that changes from step to step lives in device tensors that are refilled before
// each replay (training: the batch, the step number the keyed draws hash, the learning rate, the stop flag;
// sampling: the timestep), and the step's results are the same tensors after every replay. The dropout
// generator's offsets advance per replay (PyTorch registers the default CUDA generator with every capture).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace ddpm {

class StepGraph {
 public:
  // Throws std::runtime_error unless `device` is a CUDA device and this is a CUDA build.
  explicit StepGraph(const torch::Device& device, int64_t eager_steps = 3);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // One step. `enqueue` queues the step's device work and no host-side effects, reading and writing
  // only tensors that stay alive. It runs eagerly for the first `eager_steps` steps (kernel selection and the
  // cuBLAS and autograd workspaces are set up outside the capture, as PyTorch advises), under capture for the
  // next one, and never again: from then on the captured graph is replayed. Every step runs on a side stream,
  // after the current stream's earlier work and before its later work.
  void run(const std::function<void()>& enqueue);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ddpm
