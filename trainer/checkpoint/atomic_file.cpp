#include "trainer/checkpoint/atomic_file.h"

#include <fstream>
#include <stdexcept>

namespace ddpm {

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path temp = path.string() + ".tmp";
  std::ofstream out(temp, std::ios::trunc);
  out << text;
  out.close();
  std::error_code error;
  if (!out) {
    std::filesystem::remove(temp, error);
    throw std::runtime_error("cannot write " + temp.string());
  }
  std::filesystem::rename(temp, path, error);
  if (error) {
    std::filesystem::remove(temp, error);
    throw std::runtime_error("cannot rename " + temp.string() + " to " + path.string());
  }
}

}  // namespace ddpm
