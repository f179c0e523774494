// The dual encoder's combination of the two towers' pooled vectors (ops.h, pair_features_*).
//   out[b] = [u, v, u*v, u-v] (Nli) or [u, v] (Concat),  u = pooled[b], v = pooled[B + b]
//   du = g0 + g2 v + g3,  dv = g1 + g2 u - g3   (g_k = dout[b] block k; overwrite)
#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

template <class T>
void pair_features_forward(T* out, const T* pooled, int B, int D, Interaction kind) {
  const int K = pair_blocks(kind);
  parallel_for(B, static_cast<int64_t>(K) * D, [&](int64_t b) {
    const T* u = pooled + b * D;
    const T* v = pooled + (B + b) * D;
    T* o = out + b * K * D;
    for (int k = 0; k < K; ++k)
      for (int c = 0; c < D; ++c) o[k * D + c] = pair_feature(k, u[c], v[c]);
  });
}

template <class T>
void pair_features_backward(T* dpooled, const T* dout, const T* pooled, int B, int D, Interaction kind) {
  const int K = pair_blocks(kind);
  parallel_for(B, static_cast<int64_t>(K) * D, [&](int64_t b) {
    const T* u = pooled + b * D;
    const T* v = pooled + (B + b) * D;
    const T* g = dout + b * K * D;
    T* du = dpooled + b * D;
    T* dv = dpooled + (B + b) * D;
    for (int c = 0; c < D; ++c) {
      const T g2 = K == 4 ? g[2 * D + c] : T(0), g3 = K == 4 ? g[3 * D + c] : T(0);
      pair_feature_grads(g[c], g[D + c], g2, g3, u[c], v[c], du[c], dv[c]);
    }
  });
}

#define INST(T)                                                                          \
  template void pair_features_forward<T>(T*, const T*, int, int, Interaction);           \
  template void pair_features_backward<T>(T*, const T*, const T*, int, int, Interaction);
LRA_INSTANTIATE(INST)

}  // namespace lra
