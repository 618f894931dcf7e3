#include "distributed/sync_check.h"

#ifdef DDPM_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <stdexcept>

namespace ddpm {

SyncCheckScope::SyncCheckScope(bool enabled, const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (!enabled || !device.is_cuda()) return;
  c10::cuda::WarningState& state = c10::cuda::warning_state();
  previous_ = static_cast<int>(state.get_sync_debug_mode());
  state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  active_ = true;
#else
  (void)enabled;
  (void)device;
#endif
}

SyncCheckScope::~SyncCheckScope() {
#ifdef DDPM_WITH_CUDA
  if (active_) c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(previous_));
#endif
}

SyncCheckExempt::SyncCheckExempt() {
#ifdef DDPM_WITH_CUDA
  c10::cuda::WarningState& state = c10::cuda::warning_state();
  previous_ = static_cast<int>(state.get_sync_debug_mode());
  state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
#endif
}

SyncCheckExempt::~SyncCheckExempt() {
#ifdef DDPM_WITH_CUDA
  c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(previous_));
#endif
}

bool is_sync_check_error(const std::exception& e) {
  // c10/cuda's text for a synchronizing call under SyncDebugMode::L_ERROR.
  return std::string(e.what()).find("called a synchronizing CUDA operation") != std::string::npos;
}

void require_sync_check_device(const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) return;
  throw std::runtime_error("--sync-check needs a CUDA device, and this run is on " + device.str() +
                           " (run.device): it catches the host waiting for a GPU inside the training step");
#else
  throw std::runtime_error("--sync-check needs a CUDA device, and this ddpm was built without CUDA (run.device: " +
                           device.str() + ")");
#endif
}

}  // namespace ddpm
