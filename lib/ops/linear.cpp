// Linear layer.  x: (N, in), W: (out, in), b: (out), y: (N, out)
//   forward:  y = x W^T + b
//   backward: dx = dy W,  dW += dy^T x,  db += colsum(dy)
#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t N, int in, int out) {
  MapR<T> Y(y, N, out, Eigen::OuterStride<>(out));
  CMapR<T> X(x, N, in, Eigen::OuterStride<>(in));
  CMapR<T> Wm(W, out, in, Eigen::OuterStride<>(in));
  // Eigen's `Y = X W^T` zero-fills Y before accumulating; starting from the bias instead saves the
  // separate pass that adds it.
  parallel_for(N, out, [&](int64_t r) {
    T* row = y + r * out;
    for (int c = 0; c < out; ++c) row[c] = b != nullptr ? b[c] : T(0);
  });
  Y.noalias() += X * Wm.transpose();
}

template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t N, int in, int out) {
  CMapR<T> DY(dy, N, out, Eigen::OuterStride<>(out));
  CMapR<T> X(x, N, in, Eigen::OuterStride<>(in));
  CMapR<T> Wm(W, out, in, Eigen::OuterStride<>(in));
  if (dx != nullptr) {
    MapR<T> DX(dx, N, in, Eigen::OuterStride<>(in));
    DX.noalias() = DY * Wm;
  }
  MapR<T> DW(dW, out, in, Eigen::OuterStride<>(in));
  DW.noalias() += DY.transpose() * X;
  if (db != nullptr) {
    parallel_columns(N, out, [&](int c0, int c1) {
      for (int64_t r = 0; r < N; ++r) {
        const T* row = dy + r * out;
        for (int c = c0; c < c1; ++c) db[c] += row[c];
      }
    });
  }
}

#define INST(T)                                                                                      \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int, int);             \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int, int);
LRA_INSTANTIATE(INST)

}  // namespace lra
