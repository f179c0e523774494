// What every CUDA op and attention variant runs with: the backend's stream and cuBLAS handle (bound to
// that stream, fp32 accumulation, no TF32) and the device's limits. Ops enqueue work on `stream` and
// never synchronise; the backend synchronises where the host needs a value (the loss, a norm).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace lra::cuda {

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  int device = 0;
  int sm_count = 0;
  size_t smem_per_block_optin = 0;  // the most dynamic shared memory one block may ask for
};

// Blocks of `threads` to cover n items, at most `cap` (grid-stride loops cover the rest).
inline unsigned grid_for(long long n, int threads, long long cap = 65535LL * 32) {
  long long g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned>(g);
}

}  // namespace lra::cuda
