// A directory that appears whole or not at all: written under a hidden name beside its final one and renamed into
// place by commit(); dropped without commit() (an error on the way), the partial directory is removed.
#pragma once
#include <filesystem>
#include <string>

namespace ddpm {

class OutputDir {
 public:
  // Throws std::runtime_error when `target` exists and is not an empty directory, or its parent is missing or not
  // writable: checked before any work, so a long job does not fail at its end.
  explicit OutputDir(std::filesystem::path target);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  const std::filesystem::path& staging() const { return staging_; }
  const std::filesystem::path& target() const { return target_; }
  // fsyncs the directories under staging() (their files are synced when written) and renames it to target().
  void commit();

 private:
  std::string given_;                      // the path as the user wrote it, for messages
  std::filesystem::path target_, staging_;  // absolute
  bool committed_ = false;
};

// Writes `bytes` to `path` (a new file) and fsyncs it; throws std::runtime_error naming the file.
void write_file(const std::filesystem::path& path, const std::string& bytes);

}  // namespace ddpm
