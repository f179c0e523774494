// Element-wise maths shared by the CPU ops and (later) the CUDA kernels: one expression, tested on
// every machine by the main test suite.
#pragma once

#include <cmath>

#include "core/hd.h"

namespace lra {

enum class GeluKind { Tanh, Exact };

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
