// The kernelised attention engine on the GPU (lib/attn/kernelized.h's maths), built from chunk products.
// Per (example, head), chunks c of C = 64 rows, Ve = [V | 1], Phi_K zero on masked keys:
//   states:  St_c = X_c^T Y_c (m x e), then summed over chunks (bidirectional: one S for all rows) or
//            scanned (causal forward: T_c = sum_{c' < c} St_c'; causal backward: U_c = sum_{c' > c})
//   forward  [N | D]_c  = Phi_Q,c T_c   + tril(Phi_Q,c Phi_K,c^T) Ve_c
//   backward dPhi_Q,c   = G_c T_c^T     + tril(G_c Ve_c^T) Phi_K,c
//            dPhi_K,c   = Ve_c U_c^T    + tril(G_c Ve_c^T)^T Phi_Q,c      (zero on masked keys)
//            dV_c       = Phi_K,c U_c,N + tril(Phi_Q,c Phi_K,c^T)^T dN_c
// (bidirectional: T_c = U_c = the full sums and no tril terms). All four are one kernel, chunk_rows:
//   out[i][j] = sum_k Y[i][k] M(k, j) + sum_{i' <= i or i' >= i} (Y[i] . Z[i']) W[i'][j]
// with (Y, Z, W, M) = (Phi_Q, Phi_K, Ve, T), (G, Ve, Phi_K, T^T), (Ve, G, Phi_Q, U^T), (Phi_K, Phi_Q, dN, U).
// Then O = N r, r = 1/(D + eps) or 1/max(D, eps), and G = [dN | dD] = [r dO | -r (dO . O)].
//
// Kernels, 256 threads as 16 x 16 (tx, ty), thread (tx, ty) owning rows ty + 16 a and columns tx + 16 b
// (a, b < 4) of a 64 x 64 output tile, reductions in steps of 32 through shared memory:
//   chunk_state_kernel: grid (B tiles, heads, m-tiles x e-tiles), one state tile of one chunk.
//   state_scan_kernel:  one thread per (example, head, state element), chunks in order.
//   chunk_rows_kernel:  grid (B tiles, heads, column tiles): the tril coefficients (causal) into shared
//                       memory, then the state term and the tril term.
//   normalise_kernel / normaliser_grad_kernel: per element / one warp per (row, head).
// Every output element is written by one thread with a fixed summation order: the same bits every run.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/kernelized.h"

namespace lra::cuda::kernelized {

namespace {

constexpr int kStep = 32;  // reduction step of the tiled products

static_assert(kTile == 64 && kThreads == 256, "the 16 x 16 thread layout covers 64 x 64 tiles");

__device__ __forceinline__ float load(const RowMat& a, int64_t r, int h, int k) {
  return k < a.real ? a.p[r * a.ld + h * a.hs + k] : 1.0f;
}

__device__ __forceinline__ float guard_inverse(float d, float eps, bool clamp) {
  return clamp ? 1.0f / (d < eps ? eps : d) : 1.0f / (d + eps);
}

// The tile (b, t) of block index blockIdx.x: its first packed row and its row count (0: past the example).
struct Tile {
  int b, t;
  int64_t base;
  int n;
};
__device__ __forceinline__ Tile tile_of(const int32_t* offsets, int tiles) {
  Tile tl;
  tl.b = blockIdx.x / tiles;
  tl.t = blockIdx.x % tiles;
  const int r0 = offsets[tl.b], L = offsets[tl.b + 1] - r0, i0 = tl.t * kTile;
  tl.base = static_cast<int64_t>(r0) + i0;
  tl.n = i0 < L ? min(kTile, L - i0) : 0;
  return tl;
}

// Where the state of chunk c of example b, head h starts (me = state elements).
__device__ __forceinline__ int64_t state_offset(int b, int c, int h, int tiles, int heads, int64_t me) {
  return ((static_cast<int64_t>(b) * tiles + c) * heads + h) * me;
}

struct StateParams {
  RowMat x, y;
  float* states;
  const int32_t* offsets;
  int heads, tiles, e_tiles;
};

// St[k][j] = sum_i X[i][k] Y[i][j] over the chunk's rows, for the 64 x 64 tile (k0, j0).
__global__ void __launch_bounds__(kThreads) chunk_state_kernel(StateParams p) {
  __shared__ float xs[kStep][kTile + 1];
  __shared__ float ys[kStep][kTile + 1];
  const Tile tl = tile_of(p.offsets, p.tiles);
  if (tl.n == 0) return;
  const int h = blockIdx.y, m = p.x.width, e = p.y.width;
  const int k0 = (blockIdx.z / p.e_tiles) * kTile, j0 = (blockIdx.z % p.e_tiles) * kTile;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int c0 = 0; c0 < tl.n; c0 += kStep) {
    for (int idx = threadIdx.x; idx < kStep * kTile; idx += kThreads) {
      const int ii = idx / kTile, kk = idx % kTile;
      const bool row = c0 + ii < tl.n;
      xs[ii][kk] = row && k0 + kk < m ? load(p.x, tl.base + c0 + ii, h, k0 + kk) : 0.0f;
      ys[ii][kk] = row && j0 + kk < e ? load(p.y, tl.base + c0 + ii, h, j0 + kk) : 0.0f;
    }
    __syncthreads();
#pragma unroll 4
    for (int ii = 0; ii < kStep; ++ii) {
      float xv[4], yv[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) xv[a] = xs[ii][ty + 16 * a];
#pragma unroll
      for (int q = 0; q < 4; ++q) yv[q] = ys[ii][tx + 16 * q];
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[a][q] += xv[a] * yv[q];
    }
    __syncthreads();
  }
  float* st = p.states + state_offset(tl.b, tl.t, h, p.tiles, p.heads, static_cast<int64_t>(m) * e);
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int k = k0 + ty + 16 * a;
    if (k >= m) continue;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int j = j0 + tx + 16 * q;
      if (j < e) st[static_cast<int64_t>(k) * e + j] = acc[a][q];
    }
  }
}

__global__ void state_scan_kernel(float* states, const int32_t* offsets, int B, int heads, int tiles, int64_t me,
                                  Scan scan) {
  const int64_t total = static_cast<int64_t>(B) * heads * me;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int b = static_cast<int>(idx / (heads * me));
    const int64_t rest = idx % (heads * me);
    const int h = static_cast<int>(rest / me);
    const int chunks = (offsets[b + 1] - offsets[b] + kTile - 1) / kTile;
    float* p = states + state_offset(b, 0, h, tiles, heads, me) + rest % me;
    const int64_t stride = heads * me;  // from one chunk's state to the next
    if (scan == Scan::Total) {
      float s = 0.0f;
      for (int c = 0; c < chunks; ++c) s += p[c * stride];
      p[0] = s;
    } else if (scan == Scan::Forward) {
      float run = 0.0f;
      for (int c = 0; c < chunks; ++c) {
        const float v = p[c * stride];
        p[c * stride] = run;
        run += v;
      }
    } else {
      float run = 0.0f;
      for (int c = chunks - 1; c >= 0; --c) {
        const float v = p[c * stride];
        p[c * stride] = run;
        run += v;
      }
    }
  }
}

struct RowsParams {
  RowsArgs a;
  const int32_t* offsets;
  int heads, tiles;
};

__global__ void __launch_bounds__(kThreads) chunk_rows_kernel(RowsParams p) {
  __shared__ float ys[kTile][kStep + 1];
  __shared__ float zs[kTile][kStep + 1];
  __shared__ float cs[kTile][kTile + 1];
  __shared__ float ms[kStep][kTile + 1];
  const RowsArgs& a = p.a;
  const Tile tl = tile_of(p.offsets, p.tiles);
  if (tl.n == 0) return;
  const int h = blockIdx.y, j0 = blockIdx.z * kTile, K = a.y.width, n = tl.n;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  if (a.causal) {
    // cs[i][i'] = Y[i] . Z[i'] inside the triangle, 0 outside it and past the tile's rows.
    for (int k0 = 0; k0 < K; k0 += kStep) {
      for (int idx = threadIdx.x; idx < kTile * kStep; idx += kThreads) {
        const int i = idx / kStep, kk = idx % kStep;
        const bool ok = i < n && k0 + kk < K;
        ys[i][kk] = ok ? load(a.y, tl.base + i, h, k0 + kk) : 0.0f;
        zs[i][kk] = ok ? load(a.z, tl.base + i, h, k0 + kk) : 0.0f;
      }
      __syncthreads();
#pragma unroll 4
      for (int kk = 0; kk < kStep; ++kk) {
        float yv[4], zv[4];
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          yv[s] = ys[ty + 16 * s][kk];
          zv[s] = zs[tx + 16 * s][kk];
        }
#pragma unroll
        for (int s = 0; s < 4; ++s)
#pragma unroll
          for (int q = 0; q < 4; ++q) acc[s][q] += yv[s] * zv[q];
      }
      __syncthreads();
    }
#pragma unroll
    for (int s = 0; s < 4; ++s)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int i = ty + 16 * s, i2 = tx + 16 * q;
        const bool keep = i < n && i2 < n && (a.lower ? i2 <= i : i2 >= i);
        cs[i][i2] = keep ? acc[s][q] : 0.0f;
        acc[s][q] = 0.0f;
      }
  }
  // The state term: Y (64 x K) times M (K x 64 columns from j0).
  const float* st =
      a.states + state_offset(tl.b, a.causal ? tl.t : 0, h, p.tiles, p.heads, static_cast<int64_t>(a.m) * a.e);
  for (int k0 = 0; k0 < K; k0 += kStep) {
    for (int idx = threadIdx.x; idx < kTile * kStep; idx += kThreads) {
      const int i = idx / kStep, kk = idx % kStep;
      ys[i][kk] = i < n && k0 + kk < K ? load(a.y, tl.base + i, h, k0 + kk) : 0.0f;
    }
    if (!a.transposed) {
      for (int idx = threadIdx.x; idx < kTile * kStep; idx += kThreads) {
        const int kk = idx / kTile, jj = idx % kTile, k = k0 + kk, j = j0 + jj;
        ms[kk][jj] = k < K && j < a.out_width ? st[static_cast<int64_t>(k) * a.e + j] : 0.0f;
      }
    } else {
      for (int idx = threadIdx.x; idx < kTile * kStep; idx += kThreads) {
        const int jj = idx / kStep, kk = idx % kStep, k = k0 + kk, j = j0 + jj;
        ms[kk][jj] = k < K && j < a.out_width ? st[static_cast<int64_t>(j) * a.e + k] : 0.0f;
      }
    }
    __syncthreads();
#pragma unroll 4
    for (int kk = 0; kk < kStep; ++kk) {
      float yv[4], mv[4];
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        yv[s] = ys[ty + 16 * s][kk];
        mv[s] = ms[kk][tx + 16 * s];
      }
#pragma unroll
      for (int s = 0; s < 4; ++s)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[s][q] += yv[s] * mv[q];
    }
    __syncthreads();
  }
  // The tril term: cs (64 x 64) times W (the tile's rows, 64 columns from j0).
  if (a.causal) {
    for (int c0 = 0; c0 < n; c0 += kStep) {
      for (int idx = threadIdx.x; idx < kTile * kStep; idx += kThreads) {
        const int kk = idx / kTile, jj = idx % kTile;
        ms[kk][jj] = c0 + kk < n && j0 + jj < a.out_width ? load(a.w, tl.base + c0 + kk, h, j0 + jj) : 0.0f;
      }
      __syncthreads();
#pragma unroll 4
      for (int kk = 0; kk < kStep; ++kk) {
        float cv[4], wv[4];
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          cv[s] = cs[ty + 16 * s][c0 + kk];
          wv[s] = ms[kk][tx + 16 * s];
        }
#pragma unroll
        for (int s = 0; s < 4; ++s)
#pragma unroll
          for (int q = 0; q < 4; ++q) acc[s][q] += cv[s] * wv[q];
      }
      __syncthreads();
    }
  }
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const int i = ty + 16 * s;
    if (i >= n) continue;
    const int64_t r = tl.base + i;
    const bool zero = a.zero_rows != nullptr && a.zero_rows[r] == 0;
    float* o = a.out + r * a.out_ld + h * a.out_hs;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int j = j0 + tx + 16 * q;
      if (j < a.out_width) o[j] = zero ? 0.0f : acc[s][q];
    }
  }
}

__global__ void normalise_kernel(float* out, int64_t ld_out, float* den, const float* nd, int64_t rows, int heads,
                                 int dv, float eps, bool clamp) {
  const int e = dv + 1;
  const int64_t total = rows * heads * dv;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t rh = idx / dv;  // r heads + h
    const int c = static_cast<int>(idx % dv), h = static_cast<int>(rh % heads);
    const int64_t r = rh / heads;
    const float* row = nd + rh * e;
    const float d = row[dv];
    out[r * ld_out + static_cast<int64_t>(h) * dv + c] = row[c] * guard_inverse(d, eps, clamp);
    if (c == 0) den[rh] = d;
  }
}

__global__ void normaliser_grad_kernel(float* g, const float* dout, const float* out, int64_t ld_out,
                                       const float* den, int64_t rows, int heads, int dv, float eps, bool clamp) {
  const int lane = threadIdx.x % 32, e = dv + 1;
  const int64_t total = rows * heads;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t rh = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; rh < total;
       rh += warps) {
    const int64_t r = rh / heads;
    const int h = static_cast<int>(rh % heads);
    const float d = den[rh], inv = guard_inverse(d, eps, clamp);
    const float* dy = dout + r * ld_out + static_cast<int64_t>(h) * dv;
    const float* o = out + r * ld_out + static_cast<int64_t>(h) * dv;
    float* gr = g + rh * e;
    float dot = 0.0f;
    for (int c = lane; c < dv; c += 32) {
      dot += dy[c] * o[c];
      gr[c] = inv * dy[c];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    if (lane == 0) gr[dv] = clamp && d < eps ? 0.0f : -inv * dot;
  }
}

dim3 tile_grid(const Layout& lay, int z) {
  return dim3(static_cast<unsigned>(lay.B * lay.tiles), static_cast<unsigned>(lay.heads), static_cast<unsigned>(z));
}

int tiles_of(int n) { return (n + kTile - 1) / kTile; }

}  // namespace

void chunk_states(const RowMat& x, const RowMat& y, float* states, const Layout& lay, const Context& ctx) {
  if (lay.rows == 0) return;
  const int e_tiles = tiles_of(y.width);
  const StateParams p{x, y, states, lay.offsets, lay.heads, lay.tiles, e_tiles};
  chunk_state_kernel<<<tile_grid(lay, tiles_of(x.width) * e_tiles), kThreads, 0, ctx.stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

void scan_states(float* states, int64_t state_elems, Scan scan, const Layout& lay, const Context& ctx) {
  if (lay.rows == 0) return;
  const int64_t n = static_cast<int64_t>(lay.B) * lay.heads * state_elems;
  state_scan_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(states, lay.offsets, lay.B, lay.heads,
                                                                         lay.tiles, state_elems, scan);
  CUDA_CHECK_LAUNCH();
}

void chunk_rows(const RowsArgs& a, const Layout& lay, const Context& ctx) {
  if (lay.rows == 0) return;
  const RowsParams p{a, lay.offsets, lay.heads, lay.tiles};
  chunk_rows_kernel<<<tile_grid(lay, tiles_of(a.out_width)), kThreads, 0, ctx.stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

void normalise(float* out, int64_t ld_out, float* den, const float* nd, int dv, float eps, Guard guard,
               const Layout& lay, const Context& ctx) {
  if (lay.rows == 0) return;
  normalise_kernel<<<grid_for(lay.rows * lay.heads * dv, kThreads), kThreads, 0, ctx.stream>>>(
      out, ld_out, den, nd, lay.rows, lay.heads, dv, eps, guard == Guard::Clamp);
  CUDA_CHECK_LAUNCH();
}

void normaliser_grad(float* g, const float* dout, const float* out, int64_t ld_out, const float* den, int dv,
                     float eps, Guard guard, const Layout& lay, const Context& ctx) {
  if (lay.rows == 0) return;
  normaliser_grad_kernel<<<grid_for(lay.rows * lay.heads, kWarps), kThreads, 0, ctx.stream>>>(
      g, dout, out, ld_out, den, lay.rows, lay.heads, dv, eps, guard == Guard::Clamp);
  CUDA_CHECK_LAUNCH();
}

}  // namespace lra::cuda::kernelized
