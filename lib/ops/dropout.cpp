// Inverted dropout with a regenerated mask.  z_i = [u32_to_unit(philox_word(seed, stream, first + i)) >= p]
//   forward:  y = x z / (1-p)          backward: dx = dy z / (1-p)
#include "core/rng.h"
#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

namespace {
constexpr int64_t kChunk = 1024;

// f(i0, m, bits) for chunks [i0, i0 + m) of n elements, with bits[k] the Philox word of element
// first + i0 + k.
template <class F>
void for_chunks(int64_t n, uint64_t seed, uint64_t stream, uint64_t first, F&& f) {
  parallel_for((n + kChunk - 1) / kChunk, kChunk, [&](int64_t c) {
    uint32_t bits[kChunk];
    const int64_t i0 = c * kChunk, m = std::min(kChunk, n - i0);
    philox_fill(seed, stream, first + static_cast<uint64_t>(i0), m, bits);
    f(i0, m, bits);
  });
}
}  // namespace

template <class T>
void dropout_forward(T* y, const T* x, int64_t n, float p, uint64_t seed, uint64_t stream, uint64_t first) {
  if (p <= 0.0f) {
    if (y != x) parallel_for(n, 1, [&](int64_t i) { y[i] = x[i]; });
    return;
  }
  const T s = T(1) / (T(1) - T(p));
  const uint32_t thr = dropout_threshold(p);
  for_chunks(n, seed, stream, first, [&](int64_t i0, int64_t m, const uint32_t* bits) {
    for (int64_t k = 0; k < m; ++k) y[i0 + k] = dropout_keeps(bits[k], thr) ? x[i0 + k] * s : T(0);
  });
}

template <class T>
void dropout_backward(T* dx, const T* dy, int64_t n, float p, uint64_t seed, uint64_t stream, uint64_t first) {
  dropout_forward(dx, dy, n, p, seed, stream, first);
}

template <class T>
void residual_dropout_forward(T* out, const T* res, const T* h, int64_t n, float p, uint64_t seed,
                              uint64_t stream, uint64_t first) {
  if (p <= 0.0f) {
    parallel_for(n, 1, [&](int64_t i) { out[i] = res[i] + h[i]; });
    return;
  }
  const T s = T(1) / (T(1) - T(p));
  const uint32_t thr = dropout_threshold(p);
  for_chunks(n, seed, stream, first, [&](int64_t i0, int64_t m, const uint32_t* bits) {
    for (int64_t k = 0; k < m; ++k) out[i0 + k] = res[i0 + k] + (dropout_keeps(bits[k], thr) ? h[i0 + k] * s : T(0));
  });
}

#define INST(T)                                                                                   \
  template void dropout_forward<T>(T*, const T*, int64_t, float, uint64_t, uint64_t, uint64_t);   \
  template void dropout_backward<T>(T*, const T*, int64_t, float, uint64_t, uint64_t, uint64_t);  \
  template void residual_dropout_forward<T>(T*, const T*, const T*, int64_t, float, uint64_t, uint64_t, uint64_t);
LRA_INSTANTIATE(INST)

}  // namespace lra
