// Mixed precision for a scope: eligible ops (convolutions, matmuls, attention) run in bf16 while parameters,
// gradients and optimizer state stay float32 (the master weights). LibTorch has no RAII form of autocast.
#pragma once
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

namespace ddpm {

class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, bool enabled)
      : type_(device.type()),
        enabled_(enabled),
        was_enabled_(at::autocast::is_autocast_enabled(type_)),
        previous_dtype_(at::autocast::get_autocast_dtype(type_)) {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    // The cast weights are cached for the scope; drop them when the outermost scope ends.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, was_enabled_);
    at::autocast::set_autocast_dtype(type_, previous_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  const c10::DeviceType type_;
  const bool enabled_;
  const bool was_enabled_;
  const at::ScalarType previous_dtype_;
};

}  // namespace ddpm
