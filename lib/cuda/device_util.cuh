// Device helpers shared by the CUDA kernels (included by .cu files only).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lra::cuda {

// Sum and max over a full warp: the xor butterfly leaves the same bits in every lane (each step combines
// the same two values).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// a . b over n entries, lanes striding them; the sum in every lane.
__device__ __forceinline__ float warp_dot(const float* __restrict__ a, const float* __restrict__ b, int n) {
  float s = 0.0f;
  for (int c = threadIdx.x & 31; c < n; c += 32) s = fmaf(a[c], b[c], s);
  return warp_sum(s);
}

// The example holding packed row r: the largest b < B with offsets[b] <= r (empty examples hold no row;
// offsets[0] = 0 <= r < offsets[B]).
__device__ __forceinline__ int example_of(const int32_t* offsets, int B, int64_t r) {
  int lo = 0, hi = B;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (offsets[mid] <= r)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

}  // namespace lra::cuda
