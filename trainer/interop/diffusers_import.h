// `ddpm import`: a diffusers UNet2DModel (a DDPMPipeline directory, or its unet/ folder: config.json and
// diffusion_pytorch_model.safetensors, float32, bfloat16 or float16) into a new run directory holding a ddpm
// checkpoint of step 0 and the config: `train` fine-tunes from it (Adam and the EMA start there), `sample` and
// `eval` use it.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "trainer/config/config.h"

namespace ddpm {

struct ImportReport {
  std::filesystem::path checkpoint;   // RUN_DIR/ckpt-000000000.ddpm
  std::filesystem::path config;       // RUN_DIR/config.yaml (the config with run.dir = RUN_DIR)
  std::string weights_dtype;          // the file's dtype ("F32", "BF16", "F16"; "mixed" for several)
  int64_t tensors = 0;
  std::vector<std::string> warnings;  // scheduler settings that differ only in how to sample
};

// `from`: the pipeline directory or the unet folder. Checks the UNet2DModel config (and the scheduler's, when there
// is one) against `config`, and every tensor by name, shape and dtype. Throws std::runtime_error naming the file and
// the first key, shape or missing tensor that does not match; `run_dir` must not exist or be empty, and is left as it
// was on any error (the directory is built beside it and renamed into place).
ImportReport import_diffusers(const std::filesystem::path& from, const Config& config, const std::filesystem::path& run_dir);

}  // namespace ddpm
