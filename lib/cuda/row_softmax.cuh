// A warp's softmax over one materialised logit row and its backward, for the GPU paths that store their
// logits (linformer, synthesizer): lanes stride the row's n entries; the element-wise maths comes from
// lib/attn/row_softmax.h, shared with the CPU. visible(j) says which entries take part (the others get
// P = 0); drop.factor(base + j) is entry j's dropout factor.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attn/row_softmax.h"
#include "cuda/attention.h"
#include "cuda/device_util.cuh"

namespace lra::cuda {

// row <- P' = P z with P = softmax over the visible entries; returns LSE (in every lane). A row without a
// visible entry becomes 0 and returns +inf, so that P = exp(S - LSE) = 0 in the backward.
template <class Visible>
__device__ __forceinline__ float warp_softmax_row(float* __restrict__ row, int n, const Visible& visible,
                                                  const AttnDropout& drop, uint64_t base) {
  const int lane = threadIdx.x & 31;
  float m = -INFINITY;
  for (int j = lane; j < n; j += 32)
    if (visible(j)) m = fmaxf(m, row[j]);
  m = warp_max(m);
  if (m == -INFINITY) {
    for (int j = lane; j < n; j += 32) row[j] = 0.0f;
    return INFINITY;
  }
  float l = 0.0f;
  for (int j = lane; j < n; j += 32) {
    const float e = visible(j) ? expf(row[j] - m) : 0.0f;
    row[j] = e;
    l += e;
  }
  l = warp_sum(l);
  const float inv = 1.0f / l;
  for (int j = lane; j < n; j += 32) row[j] = row[j] * inv * drop.factor(base + static_cast<uint64_t>(j));
  return m + logf(l);
}

// From the logits s and dP' in dp: P = exp(S - lse) (0 for hidden entries), dp <- dS = P (dP z - D) and
// s <- P' = P z, with D = dO . O of the query row.
template <class Visible>
__device__ __forceinline__ void warp_softmax_row_grad(float* __restrict__ s, float* __restrict__ dp, int n, float lse,
                                                      float D, const Visible& visible, const AttnDropout& drop,
                                                      uint64_t base) {
  const int lane = threadIdx.x & 31;
  for (int j = lane; j < n; j += 32) {
    const float p = visible(j) ? expf(s[j] - lse) : 0.0f;
    const float z = drop.factor(base + static_cast<uint64_t>(j));
    dp[j] = softmax_dlogit(p, dp[j], z, D);
    s[j] = p * z;
  }
}

}  // namespace lra::cuda
