// LayerNorm over the last dimension.  x, y: (N, C); g, b: (C); mean, rstd: (N)
//   forward:  mu = mean(x), var = mean((x-mu)^2) (biased), rstd = 1/sqrt(var + eps),
//             xhat = (x - mu) rstd,  y = g xhat + b
//   backward: with dxh = dy g:  dx += rstd (dxh - mean(dxh) - xhat mean(dxh xhat))
//             dg += sum_rows dy xhat,  db += sum_rows dy
#include <cmath>

#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* g, const T* b, int64_t N, int C, T eps) {
  parallel_for(N, C, [&](int64_t r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    T s = 0;
    for (int c = 0; c < C; ++c) s += xr[c];
    const T mu = s / C;
    T v = 0;
    for (int c = 0; c < C; ++c) {
      const T d = xr[c] - mu;
      v += d * d;
    }
    const T rs = T(1) / std::sqrt(v / C + eps);
    for (int c = 0; c < C; ++c) yr[c] = (xr[c] - mu) * rs * g[c] + b[c];
    mean[r] = mu;
    rstd[r] = rs;
  });
}

template <class T>
void layernorm_backward(T* dx, T* dg, T* db, const T* dy, const T* x, const T* mean, const T* rstd,
                        const T* g, int64_t N, int C) {
  parallel_for(N, C, [&](int64_t r) {
    const T* xr = x + r * C;
    const T* dyr = dy + r * C;
    const T mu = mean[r], rs = rstd[r];
    T m1 = 0, m2 = 0;
    for (int c = 0; c < C; ++c) {
      const T dxh = dyr[c] * g[c];
      m1 += dxh;
      m2 += dxh * (xr[c] - mu) * rs;
    }
    m1 /= C;
    m2 /= C;
    T* dxr = dx + r * C;
    for (int c = 0; c < C; ++c) {
      const T xh = (xr[c] - mu) * rs;
      dxr[c] += rs * (dyr[c] * g[c] - m1 - xh * m2);
    }
  });
  parallel_columns(N, C, [&](int c0, int c1) {
    for (int64_t r = 0; r < N; ++r) {
      const T* xr = x + r * C;
      const T* dyr = dy + r * C;
      const T mu = mean[r], rs = rstd[r];
      for (int c = c0; c < c1; ++c) {
        dg[c] += dyr[c] * (xr[c] - mu) * rs;
        db[c] += dyr[c];
      }
    }
  });
}

#define INST(T)                                                                                       \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int, T);      \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                      int64_t, int);
LRA_INSTANTIATE(INST)

}  // namespace lra
