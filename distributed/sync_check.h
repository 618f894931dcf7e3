// `ddpm train --sync-check`: a CUDA call that makes the host wait for the device inside the training step (a
// read-back such as .item(), a blocking copy, a stream or event synchronization) becomes an error naming the
// step, as PyTorch's torch.cuda.set_sync_debug_mode("error") does, scoped to the step. The step is built to run
// ahead of the GPU (loss and flags are read back asynchronously, every train.log_every steps); one such wait
// drains the queue of launched kernels every step. Logging, checkpoints and evaluation read back on purpose and
// run outside the scope.
#pragma once
#include <torch/torch.h>

#include <string>

namespace ddpm {

// While it lives (and `enabled`), synchronizing CUDA calls throw c10::Error. The mode is process-wide in
// PyTorch: threads that run meanwhile (autograd's) are covered too, as they should be. Restores the mode it found.
class SyncCheckScope {
 public:
  SyncCheckScope(bool enabled, const torch::Device& device);
  ~SyncCheckScope();
  SyncCheckScope(const SyncCheckScope&) = delete;
  SyncCheckScope& operator=(const SyncCheckScope&) = delete;

 private:
  bool active_ = false;
  int previous_ = 0;
};

// A wait inside the step that is meant, once (the device synchronization before a CUDA-graph capture): exempt
// from an enclosing SyncCheckScope while it lives.
class SyncCheckExempt {
 public:
  SyncCheckExempt();
  ~SyncCheckExempt();
  SyncCheckExempt(const SyncCheckExempt&) = delete;
  SyncCheckExempt& operator=(const SyncCheckExempt&) = delete;

 private:
  int previous_ = 0;
};

// Whether an exception is the error of a synchronizing CUDA call under a SyncCheckScope.
bool is_sync_check_error(const std::exception& e);

// Throws unless a sync check can run on `device` (only CUDA devices have anything to wait for).
void require_sync_check_device(const torch::Device& device);

}  // namespace ddpm
