#include "trainer/interop/diffusers_import.h"

#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/checkpoint/train_state.h"
#include "trainer/config/builders.h"
#include "trainer/interop/diffusers_layout.h"
#include "trainer/interop/output_dir.h"
#include "trainer/model/unet.h"

namespace ddpm {
namespace fs = std::filesystem;
namespace {

constexpr const char* kWeightsFile = "diffusion_pytorch_model.safetensors";

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(path.string() + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
  }
}

// A pipeline directory (model_index.json, unet/, scheduler/) or a bare UNet2DModel folder.
fs::path unet_folder(const fs::path& from) {
  if (fs::is_regular_file(from / "unet" / "config.json")) return from / "unet";
  if (fs::is_regular_file(from / "config.json")) return from;
  if (!fs::is_directory(from)) throw std::runtime_error("--from " + from.string() + ": no such directory");
  throw std::runtime_error("--from " + from.string() + ": neither unet/config.json nor config.json is there (a diffusers "
                           "pipeline holds unet/config.json and unet/" + kWeightsFile + ")");
}

torch::ScalarType torch_dtype(const SafetensorsTensor& entry, const std::string& file) {
  if (entry.dtype == "F32") return torch::kFloat32;
  if (entry.dtype == "BF16") return torch::kBFloat16;
  if (entry.dtype == "F16") return torch::kFloat16;
  throw std::runtime_error(file + ": tensor '" + entry.name + "' has dtype " + entry.dtype +
                           "; ddpm imports F32, BF16 and F16 weights");
}

// The file's tensor `entry` as float32, checked to be `shape` and finite.
torch::Tensor read_weight(const SafetensorsFile& file, const SafetensorsTensor& entry, const std::vector<int64_t>& shape,
                          const std::string& ours) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors stores little-endian bytes: this host's order");
  if (entry.shape != shape) {
    throw std::runtime_error(file.path + ": tensor '" + entry.name + "' has shape " + c10::str(c10::IntArrayRef(entry.shape)) +
                             ", the config's U-Net needs " + c10::str(c10::IntArrayRef(shape)) + " (ddpm's " + ours + ")");
  }
  torch::Tensor raw = torch::empty(shape, torch::TensorOptions().dtype(torch_dtype(entry, file.path)));
  std::memcpy(raw.data_ptr(), file.data(entry), entry.end - entry.begin);  // a copy: the file's bytes need not be aligned
  torch::Tensor value = raw.to(torch::kFloat32);
  if (!torch::isfinite(value).all().item<bool>()) {
    throw std::runtime_error(file.path + ": tensor '" + entry.name + "' holds a NaN or an infinity");
  }
  return value;
}

// Sets config.model.downsample_padding to the UNet2DModel config's (diffusers' default 1 where it has none); returns
// a warning when that changes the config's value, "" otherwise.
std::string adopted_downsample_padding(const nlohmann::json& theirs, Config& config, const std::string& file) {
  const nlohmann::json value = theirs.is_object() && theirs.contains("downsample_padding") ? theirs["downsample_padding"]
                                                                                          : nlohmann::json(1);
  if (!value.is_number_integer() || (value.get<int64_t>() != 0 && value.get<int64_t>() != 1)) {
    throw std::runtime_error(file + ": downsample_padding is " + value.dump() + "; ddpm's U-Net pads 0 (Ho et al.'s "
                             "'SAME') or 1 (model.downsample_padding)");
  }
  const int64_t padding = value.get<int64_t>();
  if (padding == config.model.downsample_padding) return "";
  const std::string previous = std::to_string(config.model.downsample_padding);
  config.model.downsample_padding = padding;
  return "model.downsample_padding " + std::to_string(padding) + " from " + file + " (the config " + config.source +
         " has " + previous + "): the imported run's config.yaml records it";
}

}  // namespace

ImportReport import_diffusers(const fs::path& from, const Config& requested, const fs::path& run_dir) {
  if (const std::string why = diffusers_unexpressible(requested); !why.empty()) {
    throw std::runtime_error("the config " + requested.source + " is one diffusers' UNet2DModel cannot be: " + why);
  }
  const fs::path unet = unet_folder(from);
  const fs::path config_file = unet / "config.json";
  const nlohmann::json theirs = read_json(config_file);
  ImportReport report;
  // The downsampling padding is the file's (the same weights under the other one are another function): taken from
  // it, where every other key must already match.
  Config config = requested;
  config.run.dir = fs::absolute(run_dir).lexically_normal().string();  // config.yaml works from any directory
  if (const std::string padding = adopted_downsample_padding(theirs, config, config_file.string()); !padding.empty()) {
    report.warnings.push_back(padding);
  }
  try {
    check_diffusers_unet_config(theirs, config, config_file.string());
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(config_file.string() + ": a value of the wrong type (" + e.what() + ")");
  }
  const fs::path scheduler_file = from / "scheduler" / "scheduler_config.json";
  if (unet == from || !fs::is_regular_file(scheduler_file)) {
    report.warnings.push_back("no scheduler/scheduler_config.json beside " + unet.string() + ": the process (T, the β " +
                              "schedule) is the config's, not checked against the one the model was trained with");
  } else {
    try {
      const std::vector<std::string> warnings =
          check_diffusers_scheduler_config(read_json(scheduler_file), config, scheduler_file.string());
      report.warnings.insert(report.warnings.end(), warnings.begin(), warnings.end());
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(scheduler_file.string() + ": a value of the wrong type (" + e.what() + ")");
    }
  }
  const fs::path weights_file = unet / kWeightsFile;
  if (!fs::exists(weights_file) && fs::exists(unet / "diffusion_pytorch_model.bin")) {
    throw std::runtime_error(weights_file.string() + ": missing; ddpm reads safetensors only, not the pickled " +
                             "diffusion_pytorch_model.bin (convert it in Python with save_pretrained(..., "
                             "safe_serialization=True))");
  }
  const SafetensorsFile file = read_safetensors(weights_file);

  OutputDir output(run_dir);  // refuses a run directory in use before any work
  torch::manual_seed(config.run.seed);
  UNet model(unet_options(config));
  std::set<std::string> used;
  std::set<std::string> dtypes;
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      const DiffusersParameter name = diffusers_parameter(item.key(), model->options());
      const SafetensorsTensor* entry = file.find(name.theirs);
      if (entry == nullptr) {
        throw std::runtime_error(file.path + ": no tensor '" + name.theirs + "' (ddpm's " + item.key() +
                                 "): the file is not the whole of the config's U-Net");
      }
      const torch::Tensor& into = item.value();
      const std::vector<int64_t> shape = name.squeeze_1x1 ? into.flatten(1).sizes().vec() : into.sizes().vec();
      into.copy_(read_weight(file, *entry, shape, item.key()).view(into.sizes()));
      used.insert(name.theirs);
      dtypes.insert(entry->dtype);
    }
  }
  for (const SafetensorsTensor& entry : file.tensors) {
    if (used.count(entry.name) == 0) {
      throw std::runtime_error(file.path + ": tensor '" + entry.name + "' is not a parameter of the config's U-Net " +
                               "(another architecture, or a config that does not match the file)");
    }
  }
  report.tensors = static_cast<int64_t>(used.size());
  report.weights_dtype = dtypes.size() == 1 ? *dtypes.begin() : "mixed";

  // Step 0: Adam's moments zero and every EMA shadow at the imported weights, as a run starting from them would be.
  const TrainState state(model, AdamOptions{}, config.train.ema_rates);
  // No rank wrote it (world size 0): a run resuming it keeps the generators its seed gives, warning about nothing.
  Checkpoint checkpoint = state.to_checkpoint({model_shape_signature(config), to_yaml(config), 0}, {});
  nlohmann::json meta = nlohmann::json::parse(checkpoint.metadata);
  meta["imported_from"] = fs::absolute(unet).string();
  checkpoint.metadata = meta.dump();
  const fs::path written = write_checkpoint(output.staging(), checkpoint);
  write_file(output.staging() / "config.yaml", to_yaml(config));
  output.commit();
  report.checkpoint = run_dir / written.filename();
  report.config = run_dir / "config.yaml";
  return report;
}

}  // namespace ddpm
