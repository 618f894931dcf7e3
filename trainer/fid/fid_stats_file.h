// Inception statistics as .npz files, in the layout pytorch-fid and guided-diffusion read and write: `mu` float64
// [D] and `sigma` float64 [D, D]. ddpm adds `count` (a float64 scalar, the number of images), which both ignore.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "data/npz.h"
#include "trainer/fid/fid_statistics.h"

namespace ddpm {

// Written under a temporary name and renamed when complete (NpzWriter): nothing appears at `path` on failure.
void save_fid_statistics(const std::string& path, const FidStatistics& stats);

// True when an archive of these arrays (NpzFile::names) holds `mu` or `sigma`: a statistics file rather than images.
bool holds_fid_statistics(const std::vector<std::string>& names);

// The statistics of an archive read from `path` (named in messages). Throws std::runtime_error naming the file and
// the key for a missing `mu` or `sigma`, a dtype other than float64, or a shape other than [D] and [D, D].
FidStatistics fid_statistics_from_npz(const std::map<std::string, NpyArray>& arrays, const std::string& path);

FidStatistics load_fid_statistics(const std::string& path);

}  // namespace ddpm
