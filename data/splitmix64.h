// A PRNG with a fixed definition, so that shuffles and flips are the same with every compiler and standard
// library (std::shuffle and std::uniform_int_distribution are not).
#pragma once
#include <cstdint>

namespace ddpm {

// Vigna's SplitMix64 finalizer: a bijective 64-bit mix.
constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A well-spread 64-bit key of (a, b); different orders give different keys.
constexpr uint64_t hash_combine(uint64_t a, uint64_t b) {
  return splitmix64_mix(a + 0x9e3779b97f4a7c15ULL + splitmix64_mix(b ^ 0x632be59bd9b4e019ULL));
}

class SplitMix64 {
 public:
  explicit constexpr SplitMix64(uint64_t seed) : state_(seed) {}

  constexpr uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return splitmix64_mix(state_);
  }

  // Uniform in [0, bound), bound > 0, without modulo bias: draws below 2^64 mod bound are rejected.
  constexpr uint64_t below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    while (true) {
      const uint64_t r = next();
      if (r >= threshold) return r % bound;
    }
  }

 private:
  uint64_t state_;
};

}  // namespace ddpm
