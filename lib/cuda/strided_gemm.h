// A checked cuBLAS strided-batched SGEMM on the Context's handle (bound to its stream), for the attention
// variants whose products are plain matrix products (linformer.cu, synthesizer.cu).
//
// cuBLAS is column-major: a row-major matrix X (r x c, row stride ld) is, to cuBLAS, the column-major
// X^T (c x r, leading dimension ld). So a row-major C = A B is computed as the column-major C^T = B^T A^T,
// i.e. gemm(..., B's operand first, A's second), and op T on a row-major operand gives the row-major X.
#pragma once

#include <cublas_v2.h>

#include <climits>
#include <cstdint>

#include "core/check.h"
#include "cuda/check.h"
#include "cuda/context.h"

namespace lra::cuda {

// One operand of a batched product: matrix i (column-major) at p + i * stride, leading dimension ld,
// used as is (N) or transposed (T).
struct GemmOp {
  const float* p = nullptr;
  int64_t ld = 0;
  int64_t stride = 0;
  cublasOperation_t op = CUBLAS_OP_N;
};

// C_i = alpha op(A_i) op(B_i) + beta C_i for i < batch: C_i is m x n (column-major) at c + i * sc with leading
// dimension ldc, op(A_i) is m x k and op(B_i) is k x n. Every size fits cuBLAS's int (checked).
inline void gemm(const Context& ctx, int64_t m, int64_t n, int64_t k, float alpha, const GemmOp& a, const GemmOp& b,
                 float beta, float* c, int64_t ldc, int64_t sc, int64_t batch = 1) {
  LRA_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && a.ld <= INT_MAX && b.ld <= INT_MAX && ldc <= INT_MAX &&
                batch <= INT_MAX,
            "a matrix product of {} x {} x {} (leading dimensions {}, {}, {}; batch {}) is beyond cuBLAS's 32-bit "
            "sizes; use smaller shapes or --device cpu",
            m, n, k, a.ld, b.ld, ldc, batch);
  if (m <= 0 || n <= 0 || batch <= 0) return;
  CUBLAS_CHECK(cublasSgemmStridedBatched(ctx.blas, a.op, b.op, static_cast<int>(m), static_cast<int>(n),
                                         static_cast<int>(k), &alpha, a.p, static_cast<int>(a.ld), a.stride, b.p,
                                         static_cast<int>(b.ld), b.stride, &beta, c, static_cast<int>(ldc), sc,
                                         static_cast<int>(batch)));
}

}  // namespace lra::cuda
