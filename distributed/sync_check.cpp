#include "distributed/sync_check.h"

#ifdef DDPM_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <stdexcept>

namespace ddpm {

namespace {

// Values of c10::cuda::SyncDebugMode, which a build without CUDA does not have.
constexpr int kSyncDebugDisabled = 0;
constexpr int kSyncDebugError = 2;

// Sets PyTorch's process-wide CUDA sync debug mode and returns the one it replaces (a no-op without CUDA).
int exchange_sync_debug_mode(int mode) {
#ifdef DDPM_WITH_CUDA
  static_assert(static_cast<int>(c10::cuda::SyncDebugMode::L_DISABLED) == kSyncDebugDisabled &&
                static_cast<int>(c10::cuda::SyncDebugMode::L_ERROR) == kSyncDebugError);
  c10::cuda::WarningState& state = c10::cuda::warning_state();
  const int previous = static_cast<int>(state.get_sync_debug_mode());
  state.set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(mode));
  return previous;
#else
  (void)mode;
  return kSyncDebugDisabled;
#endif
}

}  // namespace

SyncCheckScope::SyncCheckScope(bool enabled, const torch::Device& device) {
  if (!enabled || !device.is_cuda()) return;
  previous_ = exchange_sync_debug_mode(kSyncDebugError);
  active_ = true;
}

SyncCheckScope::~SyncCheckScope() {
  if (active_) exchange_sync_debug_mode(previous_);
}

SyncCheckExempt::SyncCheckExempt() : previous_(exchange_sync_debug_mode(kSyncDebugDisabled)) {}

SyncCheckExempt::~SyncCheckExempt() { exchange_sync_debug_mode(previous_); }

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
