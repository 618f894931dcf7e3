#include "trainer/interop/output_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ddpm {
namespace fs = std::filesystem;
namespace {

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path.string() + " to sync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("fsync of " + path.string() + " failed: " + std::strerror(errno));
}

}  // namespace

OutputDir::OutputDir(fs::path target) : given_(target.string()), target_(fs::absolute(target).lexically_normal()) {
  // "run/" (a shell completes directories with the slash) names run, not an empty name inside it.
  if (target_.filename().empty()) target_ = target_.parent_path();
  std::error_code error;
  if (fs::exists(target_, error) && !(fs::is_directory(target_, error) && fs::is_empty(target_, error))) {
    throw std::runtime_error("--output " + given_ + " exists and is not an empty directory: it is left as it is; "
                             "choose a new path");
  }
  const fs::path parent = target_.parent_path();
  if (!fs::is_directory(parent, error)) throw std::runtime_error("cannot write " + given_ + ": no directory " + parent.string());
  if (::access(parent.c_str(), W_OK) != 0) {
    throw std::runtime_error("cannot write " + given_ + ": " + parent.string() + " is not writable");
  }
  staging_ = parent / ("." + target_.filename().string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(staging_, error);  // a crashed run of the same pid's: never a committed output
  if (!fs::create_directory(staging_, error)) {
    throw std::runtime_error("cannot create " + staging_.string() + ": " + error.message());
  }
}

OutputDir::~OutputDir() {
  if (committed_) return;
  std::error_code ignored;
  fs::remove_all(staging_, ignored);
}

void OutputDir::commit() {
  // The files were synced as they were written (write_file, write_checkpoint): the directories hold their names.
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(staging_)) {
    if (entry.is_directory()) fsync_path(entry.path(), O_RDONLY | O_DIRECTORY);
  }
  fsync_path(staging_, O_RDONLY | O_DIRECTORY);
  // rename(2) replaces an empty directory, and fails (leaving it) when something appeared there meanwhile.
  if (::rename(staging_.c_str(), target_.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + staging_.string() + " to " + target_.string() + ": " + std::strerror(errno));
  }
  committed_ = true;
  try {
    fsync_path(target_.parent_path(), O_RDONLY | O_DIRECTORY);
  } catch (const std::exception& e) {
    throw std::runtime_error(given_ + " is written and in place, but " + e.what() +
                             " (a crash now could lose the rename)");
  }
}

void write_file(const fs::path& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      throw std::runtime_error("write to " + path.string() + " failed after " + std::to_string(written) + " bytes: " + reason);
    }
    written += static_cast<size_t>(n);
  }
  const int synced = ::fsync(fd);
  const int closed = ::close(fd);
  if (synced != 0 || closed != 0) throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
}

}  // namespace ddpm
