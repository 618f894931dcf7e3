// libFuzzer target: the YAML config loader (parse_config = load_config on text) with --set overrides.
// Input: YAML text, then optionally NUL-separated assignments: "<yaml>\0train.lr=0.1\0model.channel_mult=[1,2]".
// A rejection must be a ConfigError naming the file (or "--set" for an override); a config that loads must
// print (to_yaml) to YAML that loads back to the same config.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "trainer/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string kName = "fuzz-config.yaml";
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t start = 0;
  while (parts.size() < 9) {
    const size_t nul = input.find('\0', start);
    parts.push_back(input.substr(start, nul == std::string::npos ? std::string::npos : nul - start));
    if (nul == std::string::npos) break;
    start = nul + 1;
  }
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());

  ddpm::Config config;
  try {
    config = ddpm::parse_config(parts[0], kName, overrides);
  } catch (const ddpm::ConfigError& e) {
    const std::string message = e.what();
    ddpm_fuzz::print_rejection(message);
    FUZZ_CHECK(!message.empty(), "empty error message");
    FUZZ_CHECK(message.find(kName) != std::string::npos || message.rfind("--set", 0) == 0,
               "the message names neither the file nor --set: %s", message.c_str());
    return 0;
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception(e.what());
  } catch (...) {
    ddpm_fuzz::unexpected_exception("(not a std::exception)");
  }
  FUZZ_CHECK(config.source == kName, "source is '%s'", config.source.c_str());

  // The resolved config as ddpm writes it (run_dir/config.yaml, checkpoint metadata) must load to the same config.
  const std::string printed = ddpm::to_yaml(config);
  std::string reprinted;
  try {
    reprinted = ddpm::to_yaml(ddpm::parse_config(printed, "printed.yaml"));
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, "to_yaml output does not load: %s\n--- printed:\n%s", e.what(), printed.c_str());
  }
  FUZZ_CHECK(reprinted == printed, "to_yaml does not round-trip:\n--- printed:\n%s\n--- reloaded and printed:\n%s",
             printed.c_str(), reprinted.c_str());
  return 0;
}
