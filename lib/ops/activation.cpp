// Element-wise activations. The scalar maths in ops/math.h is the reference (and what the GPU runs);
// GELU here evaluates the same expressions with Eigen's vectorised tanh/erf, and the tests hold the two
// to rounding error.
//   gelu: y = gelu(x), dx = dy gelu'(x)        relu: y = max(x, 0), dx = dy [y > 0]
#include <unsupported/Eigen/SpecialFunctions>

#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

namespace {

template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// f(offset, count) over n elements in chunks, split over threads.
template <class F>
void for_chunks(int64_t n, F&& f) {
  constexpr int64_t kChunk = 4096;
  parallel_for((n + kChunk - 1) / kChunk, kChunk * 8, [&](int64_t c) {
    const int64_t i0 = c * kChunk;
    f(i0, std::min(kChunk, n - i0));
  });
}

constexpr double kSqrt2OverPi = 0.7978845608028654, kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;

}  // namespace

template <class T>
void gelu_forward(T* y, const T* x, int64_t n, GeluKind kind) {
  for_chunks(n, [&](int64_t i0, int64_t m) {
    CArrMap<T> X(x + i0, m);
    ArrMap<T> Y(y + i0, m);
    if (kind == GeluKind::Tanh) {
      Y = T(0.5) * X * (T(1) + (T(kSqrt2OverPi) * (X + T(0.044715) * X * X * X)).tanh());
    } else {
      Y = T(0.5) * X * (T(1) + (X * T(kInvSqrt2)).erf());
    }
  });
}

template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, int64_t n, GeluKind kind) {
  for_chunks(n, [&](int64_t i0, int64_t m) {
    CArrMap<T> X(x + i0, m);
    CArrMap<T> DY(dy + i0, m);
    ArrMap<T> DX(dx + i0, m);
    if (kind == GeluKind::Tanh) {
      const Eigen::Array<T, Eigen::Dynamic, 1> t = (T(kSqrt2OverPi) * (X + T(0.044715) * X * X * X)).tanh();
      DX = DY * (T(0.5) * (T(1) + t) +
                 T(0.5) * X * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(0.134145) * X * X));
    } else {
      DX = DY * (T(0.5) * (T(1) + (X * T(kInvSqrt2)).erf()) + X * (T(-0.5) * X * X).exp() * T(kInvSqrt2Pi));
    }
  });
}

template <class T>
void relu_forward(T* y, const T* x, int64_t n) {
  parallel_for(n, 1, [&](int64_t i) { y[i] = relu(x[i]); });
}

template <class T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n) {
  parallel_for(n, 1, [&](int64_t i) { dx[i] = y[i] > T(0) ? dy[i] : T(0); });
}

#define INST(T)                                                                \
  template void gelu_forward<T>(T*, const T*, int64_t, GeluKind);              \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t, GeluKind);   \
  template void relu_forward<T>(T*, const T*, int64_t);                        \
  template void relu_backward<T>(T*, const T*, const T*, int64_t);
LRA_INSTANTIATE(INST)

}  // namespace lra
