#include "trainer/interop/diffusers_export.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/checkpoint/train_state.h"
#include "trainer/config/builders.h"
#include "trainer/interop/diffusers_layout.h"
#include "trainer/interop/output_dir.h"
#include "trainer/model/state_dict.h"
#include "trainer/model/unet.h"
#include "trainer/optim/ema.h"

namespace ddpm {
namespace fs = std::filesystem;
namespace {

// The checkpoint's tensors of one set of weights, "<prefix>/<parameter>": the EMA shadow the request names, or the
// trained weights themselves.
std::string weights_prefix(const Config& config, const std::string& weights) {
  if (weights == "model") return "model";
  const std::vector<double>& rates = config.train.ema_rates;
  if (weights == "ema" || weights.empty()) {
    if (rates.empty()) throw std::runtime_error("--weights ema: the config has no train.ema_rates; pass --weights model");
    return ema_prefix(rates.front());
  }
  std::string names;
  for (const double rate : rates) {
    if (weights == ema_prefix(rate)) return weights;
    names += ", " + ema_prefix(rate);
  }
  throw std::runtime_error("--weights " + weights + ": expected model, ema" + names + " (the config's train.ema_rates)");
}

std::pair<torch::ScalarType, const char*> safetensors_dtype(ExportDtype dtype) {
  switch (dtype) {
    case ExportDtype::kBfloat16: return {torch::kBFloat16, "BF16"};
    case ExportDtype::kFloat16: return {torch::kFloat16, "F16"};
    case ExportDtype::kFloat32: break;
  }
  return {torch::kFloat32, "F32"};
}

SafetensorsInput tensor_entry(const std::string& name, const torch::Tensor& tensor, ExportDtype dtype) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors stores little-endian bytes: this host's order");
  const auto [scalar_type, dtype_name] = safetensors_dtype(dtype);
  const torch::Tensor values = tensor.detach().to(torch::kCPU, scalar_type).contiguous();
  SafetensorsInput entry;
  entry.name = name;
  entry.dtype = dtype_name;
  entry.shape = values.sizes().vec();
  entry.data.assign(static_cast<const char*>(values.data_ptr()), values.numel() * values.element_size());
  return entry;
}

}  // namespace

ExportReport export_diffusers(const Config& config, const ExportRequest& request) {
  if (const std::string why = diffusers_unexpressible(config); !why.empty()) {
    throw std::runtime_error("diffusers' UNet2DModel cannot express the config " + config.source + ": " + why);
  }
  OutputDir output(request.output);  // refuses an existing, non-empty output before any work
  const std::string prefix = weights_prefix(config, request.weights);
  const Checkpoint checkpoint = read_checkpoint(request.checkpoint);
  torch::manual_seed(config.run.seed);
  UNet model(unet_options(config));
  ExportReport report;
  std::vector<SafetensorsInput> tensors;
  try {
    require_model_shape(checkpoint, model_shape_signature(config));
    for (const auto& item : model->named_parameters()) {
      const torch::Tensor& value = state_tensor(checkpoint.tensors, prefix + "/" + item.key(), item.value());
      const DiffusersParameter name = diffusers_parameter(item.key(), model->options());
      tensors.push_back(tensor_entry(name.theirs, name.squeeze_1x1 ? value.flatten(1) : value, request.dtype));
      report.parameters += value.numel();
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint " + request.checkpoint + ": " + e.what());
  }
  report.tensors = static_cast<int64_t>(tensors.size());
  const fs::path& dir = output.staging();
  fs::create_directories(dir / "unet");
  fs::create_directories(dir / "scheduler");
  write_file(dir / "unet" / "diffusion_pytorch_model.safetensors",
             encode_safetensors(tensors, {{"format", "pt"}, {"ddpm_weights", prefix},
                                          {"ddpm_step", std::to_string(checkpoint.step)}}));
  write_file(dir / "unet" / "config.json", diffusers_unet_config(config).dump(2) + "\n");
  write_file(dir / "scheduler" / "scheduler_config.json", diffusers_scheduler_config(config).dump(2) + "\n");
  write_file(dir / "model_index.json", diffusers_pipeline_index().dump(2) + "\n");
  output.commit();
  report.source = prefix + " weights of " + request.checkpoint + " (step " + std::to_string(checkpoint.step) + ")";
  return report;
}

}  // namespace ddpm
