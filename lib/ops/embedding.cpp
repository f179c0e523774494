// Token + position embedding with an optional CLS vector prepended inside the model.
//   forward:  x[row(b, p)] = cls + pos[0]                          if p == 0 and cls is used
//                          = wte[tok(b, p - has_cls)] + pos[p]     otherwise
//   backward: dwte[tok] += dx[row], dpos[p] += dx[row], dcls += dx[row(b, 0)]
#include <cmath>

#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

template <class T>
void embedding_forward(T* x, const int32_t* tokens, const int32_t* tok_offsets, const int32_t* row_offsets,
                       int B, const T* wte, const T* pos, const T* cls, int D) {
  const int has_cls = cls != nullptr ? 1 : 0;
  for (int b = 0; b < B; ++b) {
    const int64_t r0 = row_offsets[b];
    const int64_t rows = row_offsets[b + 1] - r0;
    const int32_t* tok = tokens + tok_offsets[b];
    parallel_for(rows, D, [&](int64_t p) {
      T* xr = x + (r0 + p) * D;
      const T* src = (has_cls && p == 0) ? cls : wte + static_cast<int64_t>(tok[p - has_cls]) * D;
      if (pos == nullptr) {  // positions enter elsewhere (rotary embeddings)
        for (int c = 0; c < D; ++c) xr[c] = src[c];
        return;
      }
      const T* pr = pos + p * D;
      for (int c = 0; c < D; ++c) xr[c] = src[c] + pr[c];
    });
  }
}

template <class T>
void embedding_backward(T* dwte, T* dpos, T* dcls, const T* dx, const int32_t* tokens,
                        const int32_t* tok_offsets, const int32_t* row_offsets, int B, int D) {
  const int has_cls = dcls != nullptr ? 1 : 0;
  const int64_t total = row_offsets[B];
  parallel_columns(total, D, [&](int c0, int c1) {
    for (int b = 0; b < B; ++b) {
      const int64_t r0 = row_offsets[b];
      const int64_t rows = row_offsets[b + 1] - r0;
      const int32_t* tok = tokens + tok_offsets[b];
      for (int64_t p = 0; p < rows; ++p) {
        const T* g = dx + (r0 + p) * D;
        T* dst = (has_cls && p == 0) ? dcls : dwte + static_cast<int64_t>(tok[p - has_cls]) * D;
        for (int c = c0; c < c1; ++c) dst[c] += g[c];
        if (dpos != nullptr) {
          T* dp = dpos + p * D;
          for (int c = c0; c < c1; ++c) dp[c] += g[c];
        }
      }
    }
  });
}

template <class T>
void sinusoidal_table(T* table, int P, int D) {
  const int half = D / 2;
  for (int p = 0; p < P; ++p) {
    for (int i = 0; i < D; ++i) table[static_cast<int64_t>(p) * D + i] = T(0);
    for (int i = 0; i < half; ++i) {
      const double w = std::exp(-(2.0 * i) * std::log(10000.0) / D);
      table[static_cast<int64_t>(p) * D + i] = static_cast<T>(std::sin(p * w));
      table[static_cast<int64_t>(p) * D + half + i] = static_cast<T>(std::cos(p * w));
    }
  }
}

#define INST(T)                                                                                          \
  template void embedding_forward<T>(T*, const int32_t*, const int32_t*, const int32_t*, int, const T*, \
                                     const T*, const T*, int);                                           \
  template void embedding_backward<T>(T*, T*, T*, const T*, const int32_t*, const int32_t*,             \
                                      const int32_t*, int, int);                                         \
  template void sinusoidal_table<T>(T*, int, int);
LRA_INSTANTIATE(INST)

}  // namespace lra
