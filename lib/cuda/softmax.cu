// Exact softmax attention on the GPU, FlashAttention-style (fp32 SIMT): the same maths, masks, dropout
// stream and saved state as lib/attn/softmax.cpp, without ever storing an L x L tensor.
//
// Per example b (rows offsets[b] .. offsets[b+1]-1) and head h, tau = dk^-1/2, mu = key mask:
//   forward:  S = tau Q K^T (-inf where mu = 0, or j > i when causal),  LSE_i = log sum_j exp S_ij,
//             P = exp(S - LSE),  P' = P z / (1-p) (attention dropout),  O = P' V
//   backward: dV = P'^T dO,  dP = (dO V^T) z / (1-p),  D_i = dO_i . O_i,  dS = P (dP - D)
//             dQ = tau dS K,  dK = tau dS^T Q
// A row that sees no key (all masked, or when causal all of keys 0 .. i masked) outputs 0 and gets
// LSE = +inf (so P = 0 in the backward).
// z_ij keeps element (row r, head h, key j) when the 24 high bits of Philox word
// dropout_element(rows, r, h, H, L_pad) + j of (seed, stream) are >= dropout_threshold(p): the CPU's mask.
//
// Kernels (128 threads, tiles of 64 queries x 64 keys, head size padded to D in {32, 64, 128}):
//   softmax_fwd:  grid (query tile, head, example). Online softmax over key tiles in shared memory:
//                 m_i = running max, l_i = running sum of exp(S_ij - m_i), O_i rescaled by
//                 exp(m_old - m_new) at each tile; O_i /= l_i and LSE_i = m_i + log l_i at the end.
//   row_dot:      D_i = dO_i . O_i per (row, head), one warp each, into scratch.
//   softmax_dkdv: grid (key tile, head, example). Loops over the query tiles that see the key tile,
//                 recomputing P from LSE: dV += P'^T dO, dK += dS^T (tau Q).
//   softmax_dq:   grid (query tile, head, example). Loops over key tiles: dQ = tau sum dS K.
// Two backward passes, each output written by exactly one block: no atomics, the same bits every run.
//
// Thread (ta, tb) = (t / 8, t % 8) of a block owns, in a 64 x 64 score tile C = A B^T (both operands
// row-major in shared memory, rows padded to D + 4 floats so float4 reads are conflict-free), the rows
// ta + 16 i (i < 4) and the columns tb + 8 j (j < 8); row reductions are shuffles over the 8 tb lanes.
// A score tile goes back to shared memory transposed as At[col][ta*4 + i], so that the product
// C2 = C A2 (rows ta + 16 i, columns g*32 + tb*4 + w) reads one float4 of At and G = D/32 float4s of A2
// per reduction step.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>

#include "attn/softmax.h"
#include "core/arena.h"
#include "core/rng.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"

namespace lra::cuda {

namespace {

constexpr int kTile = 64;       // queries and keys per tile
constexpr int kThreads = 128;   // threads per block of the three attention kernels
constexpr int kSP = kTile + 4;  // row stride of a transposed 64 x 64 score tile in shared memory

// Shared memory row stride of a 64 x D operand tile.
constexpr int row_stride(int D) { return D + 4; }

// The launch arguments (shapes in cuda/attention.h); dk = dv here.
using Params = ExactAttnParams;

// Loads rows [0, nrows) x columns [0, dk) of a row-major global tile (stride ld) into a 64 x D shared
// tile (stride D + 4), times `scale`; rows and columns beyond are zero.
template <int D>
__device__ __forceinline__ void load_tile(float* __restrict__ s, const float* __restrict__ g, int64_t ld, int nrows,
                                          int dk, float scale) {
  constexpr int SD = row_stride(D);
  const bool vec = (dk & 3) == 0 && (ld & 3) == 0 && (reinterpret_cast<uintptr_t>(g) & 15) == 0;
  if (vec) {
    constexpr int D4 = D / 4;
    for (int e = threadIdx.x; e < kTile * D4; e += kThreads) {
      const int r = e / D4, c = (e % D4) * 4;
      float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
      if (r < nrows && c < dk) {
        x = *reinterpret_cast<const float4*>(g + r * ld + c);
        x.x *= scale;
        x.y *= scale;
        x.z *= scale;
        x.w *= scale;
      }
      *reinterpret_cast<float4*>(s + r * SD + c) = x;
    }
  } else {
    for (int e = threadIdx.x; e < kTile * D; e += kThreads) {
      const int r = e / D, c = e % D;
      s[r * SD + c] = (r < nrows && c < dk) ? g[r * ld + c] * scale : 0.0f;
    }
  }
}

// Visible keys of one key tile as two bit words: key k0 + n is visible when n < nk and its mask is 1.
// Called by every thread; threads 0..63 (warps 0 and 1) do the work.
__device__ __forceinline__ void load_key_bits(uint32_t* __restrict__ kbits, const Params& p, int64_t r0, int k0,
                                              int nk) {
  const int t = threadIdx.x;
  if (t < kTile) {
    const bool ok = t < nk && (p.mask == nullptr || p.mask[r0 + k0 + t] != 0);
    const uint32_t w = __ballot_sync(0xffffffffu, ok);
    if ((t & 31) == 0) kbits[t >> 5] = w;
  }
}

// Dropout keep bits of the tile (query rows rq0 .. rq0+63 of the packed batch, keys k0 .. k0+63 of the
// example): keep[q*2 + n/32] bit n%32 is set when element (rq0 + q, h, k0 + n) is kept. Thread t builds
// row t/2, keys (t%2)*32 .. +31, from the Philox blocks covering their element indices.
__device__ __forceinline__ void load_keep_bits(uint32_t* __restrict__ keep, const Params& p, int64_t rq0, int h,
                                               int k0) {
  const int t = threadIdx.x;
  const int q = t >> 1, half = t & 1;
  const uint64_t base = dropout_element(p.drop.rows, rq0 + q, h, p.heads, p.L_pad) + static_cast<uint64_t>(k0 + half * 32);
  uint32_t bits = 0;
  for (uint64_t blk = base >> 2; blk <= (base + 31) >> 2; ++blk) {
    const U4 u = philox_block(p.drop.seed, p.drop.stream, blk);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const uint64_t e = blk * 4 + static_cast<uint64_t>(lane);
      if (e >= base && e < base + 32 && dropout_keeps(u.x[lane], p.drop.thr)) bits |= 1u << static_cast<int>(e - base);
    }
  }
  keep[q * 2 + half] = bits;
}

// c[i][j] += sum_d A[ta + 16 i][d] B[tb + 8 j][d], A and B 64 x D row-major (stride D + 4).
template <int D>
__device__ __forceinline__ void mma_nt(float (&c)[4][8], const float* __restrict__ A, const float* __restrict__ B,
                                       int ta, int tb) {
  constexpr int SD = row_stride(D);
#pragma unroll 2
  for (int d = 0; d < D; d += 4) {
    float4 a[4], b[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = *reinterpret_cast<const float4*>(A + (ta + 16 * i) * SD + d);
#pragma unroll
    for (int j = 0; j < 8; ++j) b[j] = *reinterpret_cast<const float4*>(B + (tb + 8 * j) * SD + d);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float s = c[i][j];
        s = fmaf(a[i].x, b[j].x, s);
        s = fmaf(a[i].y, b[j].y, s);
        s = fmaf(a[i].z, b[j].z, s);
        s = fmaf(a[i].w, b[j].w, s);
        c[i][j] = s;
      }
  }
}

// c[i][g*4 + w] += sum_n At[n][ta*4 + i] B[n][g*32 + tb*4 + w]: At is a transposed score tile
// (stride 68) holding row ta + 16 i of the left factor at column ta*4 + i; B is 64 x D (stride D + 4).
template <int D>
__device__ __forceinline__ void mma_nn(float (&c)[4][D / 8], const float* __restrict__ At,
                                       const float* __restrict__ B, int ta, int tb) {
  constexpr int SD = row_stride(D), G = D / 32;
#pragma unroll 4
  for (int n = 0; n < kTile; ++n) {
    const float4 a = *reinterpret_cast<const float4*>(At + n * kSP + ta * 4);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float4 b = *reinterpret_cast<const float4*>(B + n * SD + g * 32 + tb * 4);
      const float av[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        c[i][g * 4 + 0] = fmaf(av[i], b.x, c[i][g * 4 + 0]);
        c[i][g * 4 + 1] = fmaf(av[i], b.y, c[i][g * 4 + 1]);
        c[i][g * 4 + 2] = fmaf(av[i], b.z, c[i][g * 4 + 2]);
        c[i][g * 4 + 3] = fmaf(av[i], b.w, c[i][g * 4 + 3]);
      }
    }
  }
}

// At[tb + 8 j][ta*4 + i] = c[i][j]: a score tile, transposed for mma_nn.
__device__ __forceinline__ void store_transposed(float* __restrict__ At, const float (&c)[4][8], int ta, int tb) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
    *reinterpret_cast<float4*>(At + (tb + 8 * j) * kSP + ta * 4) = make_float4(c[0][j], c[1][j], c[2][j], c[3][j]);
}

// Writes rows ta + 16 i (those below nrows) of a thread's 64 x D block c, columns below dk, times scale.
template <int D>
__device__ __forceinline__ void store_rows(float* __restrict__ g, int64_t ld, int nrows, int dk, float scale,
                                           const float (&c)[4][D / 8], int ta, int tb) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ta + 16 * i;
    if (r >= nrows) continue;
#pragma unroll
    for (int g4 = 0; g4 < D / 32; ++g4)
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const int col = g4 * 32 + tb * 4 + w;
        if (col < dk) g[r * ld + col] = c[i][g4 * 4 + w] * scale;
      }
  }
}

__device__ __forceinline__ float max8(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
}
__device__ __forceinline__ float sum8(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x + __shfl_xor_sync(0xffffffffu, x, 4);
}

// Shared memory of each kernel, in bytes: float tiles, then LSE and D (backward), then the bit words
// (2 visible-key words, 128 dropout words).
constexpr size_t kBitWords = 2 + 2 * kTile;
constexpr size_t fwd_smem(int D) {
  return sizeof(float) * (3 * kTile * row_stride(D) + kTile * kSP) + sizeof(uint32_t) * kBitWords;
}
constexpr size_t dkdv_smem(int D) {
  return sizeof(float) * (4 * kTile * row_stride(D) + 2 * kTile * kSP + 2 * kTile) + sizeof(uint32_t) * kBitWords;
}
constexpr size_t dq_smem(int D) {
  return sizeof(float) * (4 * kTile * row_stride(D) + kTile * kSP + 2 * kTile) + sizeof(uint32_t) * kBitWords;
}

template <int D>
__global__ void __launch_bounds__(kThreads) softmax_fwd(Params p) {
  extern __shared__ float4 smem_f4[];
  constexpr int SD = row_stride(D);
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile;
  const int64_t r0 = p.offsets[b];
  const int L = p.offsets[b + 1] - p.offsets[b];
  if (q0 >= L) return;
  float* Qs = reinterpret_cast<float*>(smem_f4);  // 64 x D: tau Q
  float* Ks = Qs + kTile * SD;                      // 64 x D
  float* Vs = Ks + kTile * SD;                      // 64 x D
  float* Pt = Vs + kTile * SD;                      // 64 x 64, transposed
  uint32_t* kbits = reinterpret_cast<uint32_t*>(Pt + kTile * kSP);
  uint32_t* keep = kbits + 2;

  const int t = threadIdx.x, ta = t >> 3, tb = t & 7;
  const int nq = min(kTile, L - q0);
  const int64_t rq0 = r0 + q0;
  load_tile<D>(Qs, p.q + rq0 * p.ld_in + h * p.hk, p.ld_in, nq, p.hk, p.tau);

  float o[4][D / 8];
  float m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) o[i][c] = 0.0f;
  }
  const int kend = p.causal ? min(L, q0 + kTile) : L;
  for (int k0 = 0; k0 < kend; k0 += kTile) {
    const int nk = min(kTile, L - k0);
    __syncthreads();  // the previous tile's readers of Ks, Vs, Pt and the bits are done
    load_tile<D>(Ks, p.k + (r0 + k0) * p.ld_in + h * p.hk, p.ld_in, nk, p.hk, 1.0f);
    load_tile<D>(Vs, p.v + (r0 + k0) * p.ld_in + h * p.hv, p.ld_in, nk, p.hv, 1.0f);
    load_key_bits(kbits, p, r0, k0, nk);
    if (p.drop.on) load_keep_bits(keep, p, rq0, h, k0);
    __syncthreads();

    float s[4][8];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) s[i][j] = 0.0f;
    mma_nt<D>(s, Qs, Ks, ta, tb);

    const uint32_t kb0 = kbits[0], kb1 = kbits[1];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int qi = q0 + ta + 16 * i;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int n = tb + 8 * j;
        const bool visible = (((j < 4 ? kb0 : kb1) >> (n & 31)) & 1u) && !(p.causal && k0 + n > qi);
        if (!visible) s[i][j] = -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
      mx = max8(mx);
      const float mnew = fmaxf(m[i], mx);
      const bool none = mnew == -INFINITY;  // no visible key so far
      const float alpha = none ? 1.0f : expf(m[i] - mnew);
      float rs = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float e = none ? 0.0f : expf(s[i][j] - mnew);
        rs += e;
        s[i][j] = e;
      }
      rs = sum8(rs);
      l[i] = l[i] * alpha + rs;
      m[i] = mnew;
#pragma unroll
      for (int c = 0; c < D / 8; ++c) o[i][c] *= alpha;
      if (p.drop.on) {
        const uint32_t w0 = keep[(ta + 16 * i) * 2], w1 = keep[(ta + 16 * i) * 2 + 1];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const uint32_t kept = ((j < 4 ? w0 : w1) >> ((tb + 8 * j) & 31)) & 1u;
          s[i][j] = kept ? s[i][j] * p.drop.scale : 0.0f;
        }
      }
    }
    store_transposed(Pt, s, ta, tb);
    __syncthreads();
    mma_nn<D>(o, Pt, Vs, ta, tb);
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const bool none = m[i] == -INFINITY;
    const float inv = none ? 0.0f : 1.0f / l[i];
#pragma unroll
    for (int c = 0; c < D / 8; ++c) o[i][c] *= inv;
    const int q = ta + 16 * i;
    if (tb == 0 && q < nq) p.lse[(rq0 + q) * p.heads + h] = none ? INFINITY : m[i] + logf(l[i]);
  }
  store_rows<D>(p.out + rq0 * p.ld_out + h * p.hv, p.ld_out, nq, p.hv, 1.0f, o, ta, tb);
}

// D_i = dO_i . O_i for every (row, head), one warp each (lanes stride the head's columns).
__global__ void row_dot(Params p, int64_t items) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t it = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; it < items; it += warps) {
    const int64_t r = it / p.heads;
    const int h = static_cast<int>(it % p.heads);
    const float* dy = p.dout + r * p.ld_out + h * p.hv;
    const float* y = p.out + r * p.ld_out + h * p.hv;
    const float s = warp_dot(dy, y, p.hv);
    if (lane == 0) p.dsum[it] = s;
  }
}

// LSE and D of query rows q0 .. q0+63 into shared memory; rows past the example get LSE = +inf
// (P = 0) and D = 0.
__device__ __forceinline__ void load_row_stats(float* __restrict__ lse_s, float* __restrict__ d_s, const Params& p,
                                               int64_t rq0, int nq, int h) {
  const int t = threadIdx.x;
  if (t < kTile) {
    lse_s[t] = t < nq ? p.lse[(rq0 + t) * p.heads + h] : INFINITY;
    d_s[t] = t < nq ? p.dsum[(rq0 + t) * p.heads + h] : 0.0f;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) softmax_dkdv(Params p) {
  extern __shared__ float4 smem_f4[];
  constexpr int SD = row_stride(D);
  const int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * kTile;
  const int64_t r0 = p.offsets[b];
  const int L = p.offsets[b + 1] - p.offsets[b];
  if (k0 >= L) return;
  float* Ks = reinterpret_cast<float*>(smem_f4);  // 64 x D
  float* Vs = Ks + kTile * SD;                      // 64 x D
  float* Qs = Vs + kTile * SD;                      // 64 x D: tau Q
  float* dOs = Qs + kTile * SD;                     // 64 x D
  float* Pt = dOs + kTile * SD;                     // 64 x 64: P'^T, transposed (query-major)
  float* dSt = Pt + kTile * kSP;                    // 64 x 64: dS^T, transposed
  float* lse_s = dSt + kTile * kSP;
  float* d_s = lse_s + kTile;
  uint32_t* kbits = reinterpret_cast<uint32_t*>(d_s + kTile);
  uint32_t* keep = kbits + 2;

  const int t = threadIdx.x, ta = t >> 3, tb = t & 7;
  const int nk = min(kTile, L - k0);
  load_tile<D>(Ks, p.k + (r0 + k0) * p.ld_in + h * p.hk, p.ld_in, nk, p.hk, 1.0f);
  load_tile<D>(Vs, p.v + (r0 + k0) * p.ld_in + h * p.hv, p.ld_in, nk, p.hv, 1.0f);
  load_key_bits(kbits, p, r0, k0, nk);

  float acc_k[4][D / 8], acc_v[4][D / 8];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      acc_k[i][c] = 0.0f;
      acc_v[i][c] = 0.0f;
    }
  // Causal: queries before k0 see none of these keys (tiles are aligned, so start at k0's tile).
  for (int q0 = p.causal ? k0 : 0; q0 < L; q0 += kTile) {
    const int nq = min(kTile, L - q0);
    const int64_t rq0 = r0 + q0;
    __syncthreads();  // the previous tile's readers of Qs, dOs, Pt, dSt and the stats are done
    load_tile<D>(Qs, p.q + rq0 * p.ld_in + h * p.hk, p.ld_in, nq, p.hk, p.tau);
    load_tile<D>(dOs, p.dout + rq0 * p.ld_out + h * p.hv, p.ld_out, nq, p.hv, 1.0f);
    load_row_stats(lse_s, d_s, p, rq0, nq, h);
    if (p.drop.on) load_keep_bits(keep, p, rq0, h, k0);
    __syncthreads();

    // Transposed tiles: s[i][j], dp[i][j] belong to key ta + 16 i, query tb + 8 j.
    float s[4][8], dp[4][8];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        s[i][j] = 0.0f;
        dp[i][j] = 0.0f;
      }
    mma_nt<D>(s, Ks, Qs, ta, tb);
    mma_nt<D>(dp, Vs, dOs, ta, tb);

    const uint32_t kb0 = kbits[0], kb1 = kbits[1];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int n = ta + 16 * i;
      const bool key_ok = ((i < 2 ? kb0 : kb1) >> (n & 31)) & 1u;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int q = tb + 8 * j;
        const bool visible = key_ok && !(p.causal && k0 + n > q0 + q);
        const float pr = visible ? expf(s[i][j] - lse_s[q]) : 0.0f;
        float z = 1.0f;
        if (p.drop.on) z = ((keep[q * 2 + (i >> 1)] >> (n & 31)) & 1u) ? p.drop.scale : 0.0f;
        dp[i][j] = pr * (dp[i][j] * z - d_s[q]);
        s[i][j] = pr * z;
      }
    }
    store_transposed(Pt, s, ta, tb);
    store_transposed(dSt, dp, ta, tb);
    __syncthreads();
    mma_nn<D>(acc_v, Pt, dOs, ta, tb);
    mma_nn<D>(acc_k, dSt, Qs, ta, tb);
  }
  store_rows<D>(p.dk + (r0 + k0) * p.ld_in + h * p.hk, p.ld_in, nk, p.hk, 1.0f, acc_k, ta, tb);
  store_rows<D>(p.dv + (r0 + k0) * p.ld_in + h * p.hv, p.ld_in, nk, p.hv, 1.0f, acc_v, ta, tb);
}

template <int D>
__global__ void __launch_bounds__(kThreads) softmax_dq(Params p) {
  extern __shared__ float4 smem_f4[];
  constexpr int SD = row_stride(D);
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile;
  const int64_t r0 = p.offsets[b];
  const int L = p.offsets[b + 1] - p.offsets[b];
  if (q0 >= L) return;
  float* Qs = reinterpret_cast<float*>(smem_f4);  // 64 x D: tau Q
  float* dOs = Qs + kTile * SD;                     // 64 x D
  float* Ks = dOs + kTile * SD;                     // 64 x D
  float* Vs = Ks + kTile * SD;                      // 64 x D
  float* dSt = Vs + kTile * SD;                     // 64 x 64: dS, transposed (key-major)
  float* lse_s = dSt + kTile * kSP;
  float* d_s = lse_s + kTile;
  uint32_t* kbits = reinterpret_cast<uint32_t*>(d_s + kTile);
  uint32_t* keep = kbits + 2;

  const int t = threadIdx.x, ta = t >> 3, tb = t & 7;
  const int nq = min(kTile, L - q0);
  const int64_t rq0 = r0 + q0;
  load_tile<D>(Qs, p.q + rq0 * p.ld_in + h * p.hk, p.ld_in, nq, p.hk, p.tau);
  load_tile<D>(dOs, p.dout + rq0 * p.ld_out + h * p.hv, p.ld_out, nq, p.hv, 1.0f);
  load_row_stats(lse_s, d_s, p, rq0, nq, h);

  float dq[4][D / 8];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < D / 8; ++c) dq[i][c] = 0.0f;
  const int kend = p.causal ? min(L, q0 + kTile) : L;
  for (int k0 = 0; k0 < kend; k0 += kTile) {
    const int nk = min(kTile, L - k0);
    __syncthreads();  // the previous tile's readers of Ks, Vs, dSt and the bits are done
    load_tile<D>(Ks, p.k + (r0 + k0) * p.ld_in + h * p.hk, p.ld_in, nk, p.hk, 1.0f);
    load_tile<D>(Vs, p.v + (r0 + k0) * p.ld_in + h * p.hv, p.ld_in, nk, p.hv, 1.0f);
    load_key_bits(kbits, p, r0, k0, nk);
    if (p.drop.on) load_keep_bits(keep, p, rq0, h, k0);
    __syncthreads();

    // s[i][j], dp[i][j] belong to query ta + 16 i, key tb + 8 j.
    float s[4][8], dp[4][8];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        s[i][j] = 0.0f;
        dp[i][j] = 0.0f;
      }
    mma_nt<D>(s, Qs, Ks, ta, tb);
    mma_nt<D>(dp, dOs, Vs, ta, tb);

    const uint32_t kb0 = kbits[0], kb1 = kbits[1];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int q = ta + 16 * i;
      const float lse = lse_s[q], di = d_s[q];
      uint32_t w0 = 0, w1 = 0;
      if (p.drop.on) {
        w0 = keep[q * 2];
        w1 = keep[q * 2 + 1];
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int n = tb + 8 * j;
        const bool visible = (((j < 4 ? kb0 : kb1) >> (n & 31)) & 1u) && !(p.causal && k0 + n > q0 + q);
        const float pr = visible ? expf(s[i][j] - lse) : 0.0f;
        float z = 1.0f;
        if (p.drop.on) z = (((j < 4 ? w0 : w1) >> (n & 31)) & 1u) ? p.drop.scale : 0.0f;
        dp[i][j] = pr * (dp[i][j] * z - di);
      }
    }
    store_transposed(dSt, dp, ta, tb);
    __syncthreads();
    mma_nn<D>(dq, dSt, Ks, ta, tb);
  }
  store_rows<D>(p.dq + rq0 * p.ld_in + h * p.hk, p.ld_in, nq, p.hk, p.tau, dq, ta, tb);
}

class SoftmaxAttentionGpu final : public Attention<float> {
 public:
  SoftmaxAttentionGpu(const AttnConfig& c, const Context& ctx)
      : c_(c), ctx_(ctx), causal_(SoftmaxOptions::parse(c).causal) {
    LRA_CHECK(c.dk == c.dv, "softmax attention on the GPU needs dk == dv (got dk = {}, dv = {})", c.dk, c.dv);
    LRA_CHECK(c.dk >= 1 && c.dk <= 128,
              "softmax attention on the GPU supports head sizes 1 .. 128 (got {}); use more, smaller heads or "
              "--device cpu",
              c.dk);
    D_ = c.dk <= 32 ? 32 : c.dk <= 64 ? 64 : 128;
    switch (D_) {
      case 32: configure<32>(); break;
      case 64: configure<64>(); break;
      default: configure<128>(); break;
    }
  }

  // LSE per (row, head), as on the CPU.
  size_t saved_bytes(int, int64_t rows) const override {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads, Arena::kAlign);
  }
  // D_i = dO_i . O_i per (row, head).
  size_t scratch_bytes(int, int64_t rows) const override {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads, Arena::kAlign);
  }

  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void*, const AttnStep& step) override {
    const int tiles = prepare(seq);
    if (tiles == 0) return;
    const Params p = exact_attn_forward(c_, causal_, seq, io, step, static_cast<float*>(saved));
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(c_.heads), static_cast<unsigned>(seq.B));
    switch (D_) {
      case 32: softmax_fwd<32><<<grid, kThreads, fwd_smem(32), ctx_.stream>>>(p); break;
      case 64: softmax_fwd<64><<<grid, kThreads, fwd_smem(64), ctx_.stream>>>(p); break;
      default: softmax_fwd<128><<<grid, kThreads, fwd_smem(128), ctx_.stream>>>(p); break;
    }
    CUDA_CHECK_LAUNCH();
  }

  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep& step) override {
    const int tiles = prepare(seq);
    if (tiles == 0) return;
    const Params p =
        exact_attn_backward(c_, causal_, seq, io, g, step, static_cast<const float*>(saved), static_cast<float*>(scratch));
    const int64_t items = seq.rows() * c_.heads;
    row_dot<<<grid_for(items * 32, 256), 256, 0, ctx_.stream>>>(p, items);
    CUDA_CHECK_LAUNCH();
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(c_.heads), static_cast<unsigned>(seq.B));
    switch (D_) {
      case 32: launch_backward<32>(grid, p); break;
      case 64: launch_backward<64>(grid, p); break;
      default: launch_backward<128>(grid, p); break;
    }
  }

 private:
  // Lets the kernels of head size D use the shared memory they need (over the default 48 KiB).
  template <int D>
  void configure() {
    const size_t need = std::max({fwd_smem(D), dkdv_smem(D), dq_smem(D)});
    LRA_CHECK(ctx_.smem_per_block_optin == 0 || need <= ctx_.smem_per_block_optin,
              "softmax attention with head size {} needs {} bytes of shared memory per block; this GPU allows {}. "
              "Use a smaller head size or --device cpu",
              c_.dk, need, ctx_.smem_per_block_optin);
    CUDA_CHECK(cudaFuncSetAttribute(softmax_fwd<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(fwd_smem(D))));
    CUDA_CHECK(cudaFuncSetAttribute(softmax_dkdv<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(dkdv_smem(D))));
    CUDA_CHECK(cudaFuncSetAttribute(softmax_dq<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(dq_smem(D))));
  }

  template <int D>
  void launch_backward(const dim3& grid, const Params& p) const {
    softmax_dkdv<D><<<grid, kThreads, dkdv_smem(D), ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    softmax_dq<D><<<grid, kThreads, dq_smem(D), ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
  }

  // Checks the batch against the plan (host offsets) and returns the number of 64-row tiles of its
  // longest example (0 when there is nothing to do).
  int prepare(const SeqBatch& seq) const {
    check_device_batch(seq, c_.max_len, "softmax attention");
    LRA_CHECK(seq.B <= 65535, "softmax attention on the GPU takes at most 65535 examples per call (got {})", seq.B);
    int longest = 0;
    for (int b = 0; b < seq.B; ++b) longest = std::max(longest, seq.length(b));
    return (longest + kTile - 1) / kTile;
  }

  AttnConfig c_;
  Context ctx_;
  bool causal_;
  int D_ = 32;
};

std::unique_ptr<Attention<float>> make_softmax(const AttnConfig& cfg, const Context& ctx) {
  LRA_CHECK(!SoftmaxOptions::parse(cfg).store_probs,
            "softmax attention with store_probs=true has no GPU path: the GPU kernel never stores P (it recomputes "
            "it from the saved log-sum-exp in the backward, which is exact). Drop the store_probs setting (or "
            "run with --device cpu to measure the standard implementation)");
  return std::make_unique<SoftmaxAttentionGpu>(cfg, ctx);
}

[[maybe_unused]] const bool registered = register_attention("softmax", make_softmax);

}  // namespace

}  // namespace lra::cuda
