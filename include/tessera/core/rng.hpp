// Generator: a seeded, reproducible random number generator (xoshiro256**), the same on every platform.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace tessera {

// splitmix64 (Vigna): the state advanced by the golden-ratio increment, then mixed. Seeds the generator below and
// serves as the hash behind every position-keyed random draw (augmentation, dropout masks).
inline constexpr uint64_t kSplitmix64Increment = 0x9E3779B97F4A7C15ull;

inline uint64_t splitmix64(uint64_t state) {
  uint64_t z = state + kSplitmix64Increment;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Generator {
 public:
  using State = std::array<uint64_t, 4>;

  explicit Generator(uint64_t seed = 0x5EED) { manual_seed(seed); }

  // Seeds the four state words through splitmix64, as the xoshiro authors recommend.
  void manual_seed(uint64_t seed) {
    uint64_t x = seed;
    for (auto& word : state_) {
      word = splitmix64(x);
      x += kSplitmix64Increment;
    }
    has_spare_normal_ = false;
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  double uniform(double low, double high) { return low + (high - low) * uniform(); }

  // Uniform integer in [0, n); n must be positive.
  uint64_t below(uint64_t n) {
    // Lemire's multiply-shift with rejection keeps the result unbiased.
    while (true) {
      const unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * n;
      const uint64_t low = static_cast<uint64_t>(m);
      if (low >= n || low >= (-n) % n) return static_cast<uint64_t>(m >> 64);
    }
  }

  bool bernoulli(double p) { return uniform() < p; }

  // Standard normal by the Box-Muller transform; the second value of each pair is kept for the next call.
  double normal() {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * 3.14159265358979323846 * u2;
    spare_normal_ = radius * std::sin(angle);
    has_spare_normal_ = true;
    return radius * std::cos(angle);
  }

  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  // The full state, for checkpoints; set_state restores it exactly.
  struct Snapshot {
    State state;
    bool has_spare_normal;
    double spare_normal;
  };
  Snapshot snapshot() const { return {state_, has_spare_normal_, spare_normal_}; }
  void restore(const Snapshot& s) {
    state_ = s.state;
    has_spare_normal_ = s.has_spare_normal;
    spare_normal_ = s.spare_normal;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  State state_{};
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

// The process-wide generator used when a function is not given one.
inline Generator& default_generator() {
  static Generator generator;
  return generator;
}

inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace tessera
