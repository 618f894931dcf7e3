// `ddpm export --format diffusers` and `ddpm import`: the U-Net to and from diffusers (trainer/interop).
#pragma once
#include <CLI/CLI.hpp>

#include <string>

#include "trainer/cli/config_options.h"

namespace ddpm {

struct ExportArgs {
  ConfigArgs config;
  std::string checkpoint;  // default: the newest valid one of run.dir
  std::string weights = "ema";
  std::string format = "diffusers";
  std::string dtype = "float32";
  std::string output;
};

struct ImportArgs {
  std::string from;
  ConfigArgs config;
  std::string output;  // the new run directory
};

CLI::App* add_export_command(CLI::App& app, ExportArgs& args);
CLI::App* add_import_command(CLI::App& app, ImportArgs& args);

// One process (no MPI). Throw std::runtime_error naming the file and key on bad input, having written nothing.
int run_export(const ExportArgs& args);
int run_import(const ImportArgs& args);

}  // namespace ddpm
