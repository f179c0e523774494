// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011): the value at (key, counter) is a
// pure function, so CPU and GPU produce the same stream, any element can be regenerated in a
// backward pass, and a resumed run draws exactly what the uninterrupted run would have drawn.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace lra {

struct U4 {
  uint32_t x[4];
};

LRA_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

LRA_HD U4 philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    const uint32_t lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return U4{{c0, c1, c2, c3}};
}

// 24 random bits -> a float in [0, 1).
LRA_HD float u32_to_unit(uint32_t v) { return static_cast<float>(v >> 8) * (1.0f / 16777216.0f); }

// Four values for block `block` of stream `stream` under `seed`.
LRA_HD U4 philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
  return philox4x32(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                    static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32),
                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The 32-bit word of element `i` of stream `stream`: lane i%4 of block i/4.
LRA_HD uint32_t philox_word(uint64_t seed, uint64_t stream, uint64_t i) {
  return philox_block(seed, stream, i >> 2).x[i & 3];
}

// Dropout keeps element i when u32_to_unit(philox_word(seed, stream, i)) >= p, i.e. when its 24 random
// bits are >= this threshold (the same test in integers).
LRA_HD uint32_t dropout_threshold(float p) {
  return static_cast<uint32_t>(std::ceil(static_cast<double>(p) * 16777216.0));
}
// Whether dropout keeps the element whose Philox word is `word`, with thr = dropout_threshold(p).
LRA_HD bool dropout_keeps(uint32_t word, uint32_t thr) { return (word >> 8) >= thr; }

// Where the rows of a batch cut from a larger one (data-parallel training: one process's share of the
// global batch) sit in the larger batch's packed layout, so that dropout, keyed by the row, draws the
// masks of the one-process run however the examples are spread over processes. A batch has up to two
// segments of rows: its first documents, and with pairs its second ones (rows from `split` on).
struct RowMap {
  int64_t split = INT64_MAX;  // the first row of the second segment
  int64_t shift0 = 0;         // global row - local row, first segment
  int64_t shift1 = 0;         // the same, second segment
  LRA_HD int64_t operator()(int64_t r) const { return r + (r < split ? shift0 : shift1); }
};

// out[j] = the 32-bit word of element base + j, for j in [0, n): one Philox block per four elements.
// Element j is kept by dropout when dropout_keeps(out[j], dropout_threshold(p)); the callers apply that
// test in a separate loop, which the compiler vectorises.
inline void philox_fill(uint64_t seed, uint64_t stream, uint64_t base, int64_t n, uint32_t* out) {
  int64_t j = 0;
  while (j < n) {
    const uint64_t i = base + static_cast<uint64_t>(j);
    const U4 u = philox_block(seed, stream, i >> 2);
    for (uint32_t lane = static_cast<uint32_t>(i & 3); lane < 4 && j < n; ++lane, ++j) out[j] = u.x[lane];
  }
}

// A sequential generator over one Philox stream (shuffles, initialisation). The integer draws are
// LRA_HD, so a kernel draws what the host draws (BigBird's random blocks).
class Rng {
 public:
  LRA_HD Rng(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  LRA_HD uint32_t next_u32() {
    if (lane_ == 4) {
      buf_ = philox_block(seed_, stream_, block_++);
      lane_ = 0;
    }
    return buf_.x[lane_++];
  }
  LRA_HD uint64_t next_u64() { return (static_cast<uint64_t>(next_u32()) << 32) | next_u32(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  // Uniform integer in [0, n), without modulo bias.
  LRA_HD uint64_t below(uint64_t n) {
    if (n <= 1) return 0;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do v = next_u64(); while (v >= limit);
    return v % n;
  }
  // Standard normal (Box-Muller; the second value is discarded to keep the stream simple).
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t seed_, stream_;
  uint64_t block_ = 0;
  U4 buf_{};
  int lane_ = 4;
};

// Named stream ids so that independent uses of one run seed never share a stream.
namespace streams {
constexpr uint64_t kInit = 1;          // parameter initialisation
constexpr uint64_t kShuffle = 2;       // training-set order (epoch added)
constexpr uint64_t kDropout = 3ull << 56;  // dropout: kDropout | step << 16 | site
constexpr uint64_t kBench = 5;         // random benchmark inputs
constexpr uint64_t kFeatures = 6ull << 56;  // attention random features: kFeatures | layer << 40 | draw
// Random attention patterns (BigBird's random blocks): kPattern | layer << 48 | head << 36 | block << 18 | length
constexpr uint64_t kPattern = 7ull << 56;
}  // namespace streams

}  // namespace lra
