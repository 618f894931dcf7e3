// Whole-file reads. Data set files are read in one go: they fit in memory by design (images are held as uint8).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// The bytes of `path`. Throws DataError naming the path when it is missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);

// The bytes of `path`, inflated when they start with the gzip magic 1f 8b (the name does not matter).
// Throws DataError on a corrupt or truncated gzip stream.
std::vector<uint8_t> read_maybe_gzipped(const std::string& path);

// True when `bytes` start with the gzip magic.
bool is_gzip(const std::vector<uint8_t>& bytes);

// Inflates every gzip member of `compressed`; `name` is for messages.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& name);

}  // namespace ddpm
