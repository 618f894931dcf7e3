// The options every config-reading subcommand shares: --config FILE and --set section.key=value (repeatable).
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace ddpm {

struct ConfigArgs {
  std::string path;
  std::vector<std::string> overrides;
};

inline CLI::Option* add_config_options(CLI::App& command, ConfigArgs& args, bool required = true) {
  CLI::Option* config =
      command.add_option("--config", args.path, "YAML config of the run (configs/*.yaml)")->check(CLI::ExistingFile);
  if (required) config->required();
  command.add_option("--set", args.overrides, "Override a config key: section.key=value (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  return config;
}

}  // namespace ddpm
