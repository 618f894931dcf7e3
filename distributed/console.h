// Messages for the user on stderr, one line at a time. Under mpirun, the ranks' stderr and stdout reach the
// terminal (or a log file) through separate pipes, copied chunk by chunk as they arrive: a line written in
// pieces (what `std::cerr << a << b` does, stderr being unbuffered) can have another rank's output or a
// progress line land inside it. One write(2) per line keeps every line whole.
#pragma once

#include <string>

namespace ddpm {

// Writes `line` and a newline to stderr with a single write (retried only for what a signal cut short).
void print_line(const std::string& line);

}  // namespace ddpm
