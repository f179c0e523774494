// AdamW (decoupled weight decay), element-wise maths in ops/math.h; global-norm helpers.
#include <cmath>
#include <vector>

#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const AdamW& hp, int64_t t) {
  const T bc1 = static_cast<T>(1.0 - std::pow(hp.beta1, static_cast<double>(t)));
  const T bc2 = static_cast<T>(1.0 - std::pow(hp.beta2, static_cast<double>(t)));
  const T lr = static_cast<T>(hp.lr), b1 = static_cast<T>(hp.beta1), b2 = static_cast<T>(hp.beta2);
  const T eps = static_cast<T>(hp.eps), wd = static_cast<T>(hp.weight_decay);
  parallel_for(n, 8, [&](int64_t i) { adamw_element(p[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, bc1, bc2); });
}

template <class T>
double sum_squares(const T* x, int64_t n) {
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
  parallel_for(chunks, kChunk, [&](int64_t k) {
    const int64_t i1 = std::min(n, (k + 1) * kChunk);
    double s = 0.0;
    for (int64_t i = k * kChunk; i < i1; ++i) s += static_cast<double>(x[i]) * x[i];
    part[static_cast<size_t>(k)] = s;
  });
  double total = 0.0;
  for (double s : part) total += s;
  return total;
}

template <class T>
void scale_inplace(T* x, int64_t n, T s) {
  parallel_for(n, 1, [&](int64_t i) { x[i] *= s; });
}

#define INST(T)                                                                            \
  template void adamw_update<T>(T*, const T*, T*, T*, int64_t, const AdamW&, int64_t);     \
  template double sum_squares<T>(const T*, int64_t);                                       \
  template void scale_inplace<T>(T*, int64_t, T);
LRA_INSTANTIATE(INST)

}  // namespace lra
