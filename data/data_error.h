// The one exception type of the data library, so that the CLI can tell bad input from bugs.
#pragma once
#include <stdexcept>
#include <string>

namespace ddpm {

// A data set or loader problem. The message names the file and the offset or index where it went wrong,
// because the user has to find and fix the file without a debugger.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ddpm
