#include "distributed/console.h"

#include <unistd.h>

#include <cerrno>
#include <iostream>

namespace ddpm {

void print_line(const std::string& line) {
  const std::string text = line + "\n";
  std::cerr.flush();  // whatever went through std::cerr before comes first
  const char* data = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t written = ::write(STDERR_FILENO, data, left);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;  // stderr is gone; nothing better to do with a message
    data += written;
    left -= static_cast<std::size_t>(written);
  }
}

}  // namespace ddpm
