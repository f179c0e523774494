// Softmax cross-entropy averaged over B rows.  logits, probs: (B, C); labels: (B)
//   forward:  loss_b = LSE(z_b) - z_b[y_b]  (max-subtracted),  loss = mean_b loss_b
//   backward: dz_b = (softmax(z_b) - onehot(y_b)) / B
#include <cmath>

#include "ops/instantiate.h"
#include "ops/ops.h"

namespace lra {

template <class T>
double cross_entropy_forward(T* probs, T* losses, const T* logits, const int32_t* labels, int B, int C) {
  double total = 0.0;
  for (int b = 0; b < B; ++b) {
    const T* z = logits + static_cast<int64_t>(b) * C;
    T* p = probs + static_cast<int64_t>(b) * C;
    T m = z[0];
    for (int c = 1; c < C; ++c) m = z[c] > m ? z[c] : m;
    T s = 0;
    for (int c = 0; c < C; ++c) {
      p[c] = std::exp(z[c] - m);
      s += p[c];
    }
    for (int c = 0; c < C; ++c) p[c] /= s;
    const double loss = static_cast<double>(m) + std::log(static_cast<double>(s)) - z[labels[b]];
    if (losses != nullptr) losses[b] = static_cast<T>(loss);
    total += loss;
  }
  return B > 0 ? total / B : 0.0;
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* probs, const int32_t* labels, int B, int C) {
  const T inv = T(1) / static_cast<T>(B);
  for (int b = 0; b < B; ++b) {
    for (int c = 0; c < C; ++c) {
      const int64_t i = static_cast<int64_t>(b) * C + c;
      dlogits[i] = (probs[i] - (c == labels[b] ? T(1) : T(0))) * inv;
    }
  }
}

#define INST(T)                                                                                       \
  template double cross_entropy_forward<T>(T*, T*, const T*, const int32_t*, int, int);               \
  template void cross_entropy_backward<T>(T*, const T*, const int32_t*, int, int);
LRA_INSTANTIATE(INST)

}  // namespace lra
