// `ddpm export --format diffusers`: a checkpoint's weights as a diffusers DDPMPipeline directory
//   DIR/model_index.json
//   DIR/unet/config.json, DIR/unet/diffusion_pytorch_model.safetensors     (UNet2DModel)
//   DIR/scheduler/scheduler_config.json                                   (DDPMScheduler)
// so that DDPMPipeline.from_pretrained(DIR) loads it and UNet2DModel gives ddpm's ε for the same inputs.
#pragma once
#include <filesystem>
#include <string>
#include <utility>

#include "trainer/config/config.h"

namespace ddpm {

// The dtype of the exported tensors (the checkpoint's are float32).
enum class ExportDtype { kFloat32, kBfloat16, kFloat16 };
inline constexpr std::pair<ExportDtype, const char*> kExportDtypeNames[] = {
    {ExportDtype::kFloat32, "float32"}, {ExportDtype::kBfloat16, "bfloat16"}, {ExportDtype::kFloat16, "float16"}};

struct ExportRequest {
  std::string checkpoint;  // a checkpoint file
  std::string weights;     // "ema_<rate>" (a rate of the config's train.ema_rates), "ema" (its first), or "model"
  ExportDtype dtype = ExportDtype::kFloat32;
  std::filesystem::path output;  // must not exist (or be an empty directory)
};

struct ExportReport {
  std::string source;     // "ema_0.9999 weights of <checkpoint> (step N)"
  int64_t tensors = 0;
  int64_t parameters = 0;
};

// Throws std::runtime_error naming the file, the key or the reason the layout cannot express the config; then
// nothing is left at `output` (the directory is written beside it and renamed into place when complete).
ExportReport export_diffusers(const Config& config, const ExportRequest& request);

}  // namespace ddpm
