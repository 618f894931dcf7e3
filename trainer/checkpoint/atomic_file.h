// Small text files that readers may open at any moment (the resolved config, Prometheus' file_sd targets):
// written to a temp file and renamed over the old one, so a reader sees the old file or the new one, never half.
#pragma once
#include <filesystem>
#include <string>

namespace ddpm {

// Throws std::runtime_error naming the file; on failure the temp file is removed and the old file kept.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace ddpm
