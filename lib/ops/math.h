// Element-wise maths shared by the CPU ops and the CUDA kernels (lib/cuda/ops.cu): one expression, tested on
// every machine by the main test suite.
#pragma once

#include <cmath>

#include "core/host_device.h"

namespace lra {

enum class GeluKind { Tanh, Exact };

// The dual encoder's combination of two pooled vectors u and v (retrieval): Nli = [u, v, u*v, u-v]
// (the LRA paper, A.1.3 Eq. 1), Concat = [u, v] (what LRA's code runs: no config passes `interaction`).
enum class Interaction { Nli, Concat };
LRA_HD int pair_blocks(Interaction kind) { return kind == Interaction::Nli ? 4 : 2; }
// Block k (0 .. pair_blocks-1) of one column: u, v, u*v, u-v.
template <class T>
LRA_HD T pair_feature(int k, T u, T v) {
  return k == 0 ? u : k == 1 ? v : k == 2 ? u * v : u - v;
}
// The gradients of sum_k g[k] pair_feature(k, u, v):  du = g0 + g2 v + g3,  dv = g1 + g2 u - g3
// (g2 = g3 = 0 for Concat).
template <class T>
LRA_HD void pair_feature_grads(T g0, T g1, T g2, T g3, T u, T v, T& du, T& dv) {
  du = g0 + g2 * v + g3;
  dv = g1 + g2 * u - g3;
}

// Tanh approximation (Flax's default, which LRA's MLP block uses):
//   g = x/2 (1 + t),  t = tanh(k (x + 0.044715 x^3)),  k = sqrt(2/pi)
//   g' = (1 + t)/2 + x/2 (1 - t^2) k (1 + 3*0.044715 x^2)
template <class T>
LRA_HD T gelu_tanh(T x) {
  const T k = T(0.7978845608028654);
  const T t = std::tanh(k * (x + T(0.044715) * x * x * x));
  return T(0.5) * x * (T(1) + t);
}
template <class T>
LRA_HD T gelu_tanh_grad(T x) {
  const T k = T(0.7978845608028654);
  const T t = std::tanh(k * (x + T(0.044715) * x * x * x));
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k * (T(1) + T(0.134145) * x * x);
}
// Exact: g = x Phi(x),  g' = Phi(x) + x exp(-x^2/2)/sqrt(2 pi)
template <class T>
LRA_HD T gelu_exact(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(0.7071067811865476)));
}
template <class T>
LRA_HD T gelu_exact_grad(T x) {
  return T(0.5) * (T(1) + std::erf(x * T(0.7071067811865476))) +
         x * std::exp(T(-0.5) * x * x) * T(0.3989422804014327);
}

template <class T>
LRA_HD T relu(T x) {
  return x > T(0) ? x : T(0);
}

// One AdamW step for one element (PyTorch's AdamW, which equals Flax's decoupled Adam used by LRA):
//   p <- p (1 - lr wd);  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
//   p <- p - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// bc1 = 1 - b1^t and bc2 = 1 - b2^t are computed once per step by the caller.
template <class T>
LRA_HD void adamw_element(T& p, T g, T& m, T& v, T lr, T b1, T b2, T eps, T wd, T bc1, T bc2) {
  p -= lr * wd * p;
  m = b1 * m + (T(1) - b1) * g;
  v = b2 * v + (T(1) - b2) * g * g;
  p -= lr * (m / bc1) / (std::sqrt(v / bc2) + eps);
}

}  // namespace lra
