#include "trainer/cli/interop_command.h"

#include <iostream>
#include <stdexcept>

#include "trainer/config/config.h"
#include "trainer/eval/inference.h"
#include "trainer/interop/diffusers_export.h"
#include "trainer/interop/diffusers_import.h"

namespace ddpm {
namespace {

ExportDtype parse_export_dtype(const std::string& name) {
  for (const auto& [dtype, text] : kExportDtypeNames) {
    if (name == text) return dtype;
  }
  throw std::runtime_error("--dtype " + name + ": expected float32, bfloat16 or float16");
}

}  // namespace

CLI::App* add_export_command(CLI::App& app, ExportArgs& args) {
  CLI::App* command = app.add_subcommand(
      "export", "Write a checkpoint's weights as a diffusers DDPMPipeline (UNet2DModel safetensors + config.json)");
  add_config_options(*command, args.config);
  command->add_option("--checkpoint", args.checkpoint, "Checkpoint file (default: newest in run.dir)");
  command->add_option("--weights", args.weights, "ema (the first of train.ema_rates), ema_<rate>, or model");
  command->add_option("--format", args.format, "diffusers (the one format)")->check(CLI::IsMember({"diffusers"}));
  command->add_option("--dtype", args.dtype, "float32 (default), bfloat16 or float16")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
  command->add_option("--output", args.output, "New directory: model_index.json, unet/, scheduler/")->required();
  return command;
}

CLI::App* add_import_command(CLI::App& app, ImportArgs& args) {
  CLI::App* command = app.add_subcommand(
      "import", "Read a diffusers UNet2DModel (a DDPMPipeline folder or its unet/) into a new run directory at step 0");
  command->add_option("--from", args.from, "diffusers directory (model_index.json + unet/, or config.json + safetensors)")
      ->required();
  add_config_options(*command, args.config);
  command->add_option("--output", args.output, "New run directory: ckpt-000000000.ddpm and config.yaml")->required();
  return command;
}

int run_export(const ExportArgs& args) {
  const Config config = load_config(args.config.path, args.config.overrides);
  ExportRequest request;
  request.checkpoint = resolve_checkpoint(config, args.checkpoint);
  if (request.checkpoint.empty()) {
    throw std::runtime_error("no valid checkpoint in run directory " + config.run.dir +
                             " (train first, or pass --checkpoint PATH)");
  }
  request.weights = args.weights;
  request.dtype = parse_export_dtype(args.dtype);
  request.output = args.output;
  const ExportReport report = export_diffusers(config, request);
  std::cout << "exported " << report.source << ": " << report.tensors << " tensors, " << report.parameters
            << " parameters (" << args.dtype << ") as a diffusers DDPMPipeline in " << args.output
            << "\n  DDPMPipeline.from_pretrained(\"" << args.output << "\")"
            << (config.diffusion.timesteps < 1000
                    ? " samples with num_inference_steps=" + std::to_string(config.diffusion.timesteps) +
                          " (its default is 1000)"
                    : std::string())
            << std::endl;
  return 0;
}

int run_import(const ImportArgs& args) {
  const Config config = load_config(args.config.path, args.config.overrides);
  const ImportReport report = import_diffusers(args.from, config, args.output);
  for (const std::string& warning : report.warnings) std::cerr << "ddpm: warning: " << warning << std::endl;
  std::cout << "imported " << report.tensors << " tensors (" << report.weights_dtype << ") of " << args.from
            << " into " << report.checkpoint.string() << " (step 0)\n  ddpm train|sample|eval --config "
            << report.config.string() << std::endl;
  return 0;
}

}  // namespace ddpm
