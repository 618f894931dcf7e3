// What every fuzz target asserts: a rejection is the module's clear-error type with a message that names the
// input; anything else (another exception escaping, a broken invariant) aborts, which libFuzzer reports as a
// crash and saves the input.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#define FUZZ_CHECK(condition, ...)                                                               \
  do {                                                                                           \
    if (!(condition)) {                                                                          \
      std::fprintf(stderr, "fuzz check failed at %s:%d: %s\n", __FILE__, __LINE__, #condition); \
      std::fprintf(stderr, __VA_ARGS__);                                                         \
      std::fprintf(stderr, "\n");                                                                \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)

namespace ddpm_fuzz {

// A clear rejection: a non-empty message that names the input.
// DDPM_FUZZ_PRINT=1 prints every rejection (to see why the inputs given on the command line are refused).
inline void print_rejection(const std::string& message) {
  static const bool print = std::getenv("DDPM_FUZZ_PRINT") != nullptr;
  if (print) std::fprintf(stderr, "rejected: %s\n", message.c_str());
}

inline void expect_clear_message(const std::exception& e, const std::string& name) {
  const std::string message = e.what();
  print_rejection(message);
  FUZZ_CHECK(!message.empty(), "empty error message");
  FUZZ_CHECK(message.find(name) != std::string::npos, "the message does not name '%s': %s", name.c_str(),
             message.c_str());
}

// Any other exception escaping is a bug: abort with its message.
[[noreturn]] inline void unexpected_exception(const char* what) {
  FUZZ_CHECK(false, "unexpected exception escaped: %s", what);
  std::abort();
}

}  // namespace ddpm_fuzz
