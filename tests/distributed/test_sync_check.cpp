// The --sync-check machinery without a GPU: c10's sync debug mode is a process-wide setting that a CPU machine
// has too, and c10::cuda::warn_or_error_on_sync() is the call every synchronizing CUDA operation makes first
// (memcpy_and_sync behind .item() and blocking copies, stream and device synchronization). So the scopes, the
// exemption and the recognized message are checked here; that the step makes no such call is checked on a GPU
// (launch/gpu/gpu_check.sh).
#include <gtest/gtest.h>

#include <stdexcept>

#include "distributed/sync_check.h"

#ifdef DDPM_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>

namespace {

bool synchronizing_call_throws() {
  try {
    c10::cuda::warn_or_error_on_sync();
  } catch (const c10::Error& e) {
    EXPECT_TRUE(ddpm::is_sync_check_error(e)) << e.what();
    return true;
  }
  return false;
}

TEST(SyncCheck, ScopeMakesSynchronizingCallsErrorsAndRestoresTheModeItFound) {
  const torch::Device gpu(torch::kCUDA, 0);
  EXPECT_FALSE(synchronizing_call_throws());
  {
    const ddpm::SyncCheckScope check(/*enabled=*/true, gpu);
    EXPECT_TRUE(synchronizing_call_throws());
    {
      const ddpm::SyncCheckExempt once;
      EXPECT_FALSE(synchronizing_call_throws());
    }
    EXPECT_TRUE(synchronizing_call_throws()) << "the exemption must restore the check";
  }
  EXPECT_FALSE(synchronizing_call_throws()) << "the scope must restore the mode it found";
  EXPECT_EQ(c10::cuda::warning_state().get_sync_debug_mode(), c10::cuda::SyncDebugMode::L_DISABLED);
}

TEST(SyncCheck, DisabledOrOnTheCpuItChangesNothing) {
  {
    const ddpm::SyncCheckScope check(/*enabled=*/false, torch::Device(torch::kCUDA, 0));
    EXPECT_FALSE(synchronizing_call_throws());
  }
  {
    const ddpm::SyncCheckScope check(/*enabled=*/true, torch::Device(torch::kCPU));
    EXPECT_FALSE(synchronizing_call_throws());
  }
}

}  // namespace
#endif

namespace {

TEST(SyncCheck, OtherErrorsAreNotTakenForAHostWait) {
  EXPECT_FALSE(ddpm::is_sync_check_error(std::runtime_error("CUDA out of memory")));
}

TEST(SyncCheck, RefusesACpuDevice) {
#ifdef DDPM_WITH_CUDA
  EXPECT_NO_THROW(ddpm::require_sync_check_device(torch::Device(torch::kCUDA, 0)));
#endif
  try {
    ddpm::require_sync_check_device(torch::Device(torch::kCPU));
    FAIL() << "a CPU device was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--sync-check needs a CUDA device"), std::string::npos) << e.what();
  }
}

}  // namespace
