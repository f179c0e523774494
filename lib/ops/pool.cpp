// Pooling of each example's rows to one vector.  x: (rows, D), out: (B, D)
//   Cls:  out[b] = x[first row of b];                 dx[first row] = dout[b], other rows 0
//   Mean: out[b] = sum_r mu_r x[r] / sum_r mu_r;      dx[r] = mu_r dout[b] / sum_r mu_r
//   Max:  out[b][c] = max_{r: mu_r} x[r][c];          dx[r*][c] = dout[b][c] for the first r* holding it
// (mu = key_mask; an example with no real row pools to 0 and gets no gradient.)
#include <cstring>
#include <vector>

#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

namespace {
int64_t count_real(const uint8_t* key_mask, int64_t r0, int64_t r1) {
  if (key_mask == nullptr) return r1 - r0;
  int64_t n = 0;
  for (int64_t r = r0; r < r1; ++r) n += key_mask[r] != 0;
  return n;
}

// Per column, the first real row of [r0, r1) holding the column's largest value (-1 when none is real).
template <class T>
void argmax_rows(int64_t* best, const T* x, const uint8_t* key_mask, int64_t r0, int64_t r1, int D) {
  for (int c = 0; c < D; ++c) best[c] = -1;
  for (int64_t r = r0; r < r1; ++r) {
    if (key_mask != nullptr && key_mask[r] == 0) continue;
    for (int c = 0; c < D; ++c)
      if (best[c] < 0 || x[r * D + c] > x[best[c] * D + c]) best[c] = r;
  }
}
}  // namespace

template <class T>
void pool_forward(T* out, const T* x, const int32_t* row_offsets, const uint8_t* key_mask, int B, int D,
                  Pool kind) {
  parallel_for(B, static_cast<int64_t>(row_offsets[B]) * D / (B > 0 ? B : 1), [&](int64_t b) {
    T* o = out + b * D;
    const int64_t r0 = row_offsets[b], r1 = row_offsets[b + 1];
    for (int c = 0; c < D; ++c) o[c] = T(0);
    if (r1 == r0) return;
    if (kind == Pool::Cls) {
      for (int c = 0; c < D; ++c) o[c] = x[r0 * D + c];
      return;
    }
    if (kind == Pool::Max) {
      thread_local std::vector<int64_t> best;  // grows once per thread, not per call
      best.resize(static_cast<size_t>(D));
      argmax_rows(best.data(), x, key_mask, r0, r1, D);
      for (int c = 0; c < D; ++c)
        if (best[static_cast<size_t>(c)] >= 0) o[c] = x[best[static_cast<size_t>(c)] * D + c];
      return;
    }
    const int64_t n = count_real(key_mask, r0, r1);
    if (n == 0) return;
    for (int64_t r = r0; r < r1; ++r) {
      if (key_mask != nullptr && key_mask[r] == 0) continue;
      for (int c = 0; c < D; ++c) o[c] += x[r * D + c];
    }
    const T inv = T(1) / static_cast<T>(n);
    for (int c = 0; c < D; ++c) o[c] *= inv;
  });
}

template <class T>
void pool_backward(T* dx, const T* dout, const T* x, const int32_t* row_offsets, const uint8_t* key_mask, int B,
                   int D, Pool kind) {
  parallel_for(B, static_cast<int64_t>(row_offsets[B]) * D / (B > 0 ? B : 1), [&](int64_t b) {
    const T* g = dout + b * D;
    const int64_t r0 = row_offsets[b], r1 = row_offsets[b + 1];
    std::memset(dx + r0 * D, 0, sizeof(T) * static_cast<size_t>((r1 - r0) * D));
    if (r1 == r0) return;
    if (kind == Pool::Cls) {
      for (int c = 0; c < D; ++c) dx[r0 * D + c] = g[c];
      return;
    }
    if (kind == Pool::Max) {
      thread_local std::vector<int64_t> best;  // grows once per thread, not per call
      best.resize(static_cast<size_t>(D));
      argmax_rows(best.data(), x, key_mask, r0, r1, D);
      for (int c = 0; c < D; ++c)
        if (best[static_cast<size_t>(c)] >= 0) dx[best[static_cast<size_t>(c)] * D + c] = g[c];
      return;
    }
    const int64_t n = count_real(key_mask, r0, r1);
    if (n == 0) return;
    const T inv = T(1) / static_cast<T>(n);
    for (int64_t r = r0; r < r1; ++r) {
      if (key_mask != nullptr && key_mask[r] == 0) continue;
      for (int c = 0; c < D; ++c) dx[r * D + c] = g[c] * inv;
    }
  });
}

#define INST(T)                                                                                         \
  template void pool_forward<T>(T*, const T*, const int32_t*, const uint8_t*, int, int, Pool);          \
  template void pool_backward<T>(T*, const T*, const T*, const int32_t*, const uint8_t*, int, int, Pool);
LRA_INSTANTIATE(INST)

}  // namespace lra
