// The feature maps of the kernelised variants on the GPU, forward and backward, as the CPU maps compute
// them (lib/attn/linear.cpp, cosformer.cpp, performer.cpp). Per row x (dk values) of one head:
//   Elu (linear):          phi = exp(min(x, 0)) + max(x, 0);             dx = dphi min(phi, 1)
//   Cos (cosformer):       phi = [relu(x) sin t_i | relu(x) cos t_i], t_i = pi/2 (i + 1)/M (double, then float)
//                          dx = [x > 0] (sin t_i dphi_sin + cos t_i dphi_cos)
//   Relu (features = 0):   phi = relu(x) + kernel_eps;                    dx = [x > 0] dphi
//   ReluProj:              u = W xh, xh = dk^-1/4 x;  phi = relu(u) + kernel_eps
//                          dx = dk^-1/4 ([u > 0] dphi) W
//   Favor (performer):     phi = m^-1/2 (exp(u - |xh|^2/2 - s) + feature_eps), s = max_r u_r per query row;
//                          for keys one s per (example, head): max over real keys and features, or (causal)
//                          over the first real key only
//                          dU = m^-1/2 dphi (m^1/2 phi - feature_eps),  dh = -rowsum(dU)
//                          dU[argmax] += dh (queries) or += ds = sum over the example's rows of dh (keys)
//                          dx = dk^-1/4 (dU W + dh xh)
// Rows of masked keys get phi = 0 (their dphi is 0, so their dx is 0).
//
// Kernels (256 threads; grid (B tiles, heads) over tiles of 64 rows of one example, as the engine's):
//   pointwise_features[_backward]: Elu, Cos, Relu, one thread per element (cos/sin per row in shared memory).
//   projected_features:  ReluProj and Favor, one warp per (row, head): xh in shared memory, lane j computes
//                        u_j = xh . W^T[:, j]; Favor queries take the row's max and argmax (ties: the lowest
//                        feature, as Eigen's maxCoeff) by shuffles; Favor keys record them per row.
//   key_stabiliser:      Favor keys, one block per (example, head): s and its argmax (ties: the lowest
//                        row, then feature, as the CPU's scan), by a fixed tree in shared memory.
//   favor_keys:          Favor keys, phi = m^-1/2 (exp(u - |xh|^2/2 - s) + feature_eps), per element.
//   projected_backward:  one warp per (row, head): dU in place of dphi, then lane t sums dU_j W[j][t].
//                        Favor keys run it twice around head_sum (ds per (example, head), a fixed tree).
#include <cuda_runtime.h>

#include <cmath>
#include <limits>

#include "attn/feature_maps.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"
#include "cuda/kernelized.h"
#include "ops/math.h"

namespace lra::cuda::kernelized {

namespace {

struct Tile {
  int b, t;
  int64_t base;
  int i0, n;
};
__device__ __forceinline__ Tile tile_of(const int32_t* offsets, int tiles) {
  Tile tl;
  tl.b = blockIdx.x / tiles;
  tl.t = blockIdx.x % tiles;
  const int r0 = offsets[tl.b], L = offsets[tl.b + 1] - r0;
  tl.i0 = tl.t * kTile;
  tl.base = static_cast<int64_t>(r0) + tl.i0;
  tl.n = tl.i0 < L ? min(kTile, L - tl.i0) : 0;
  return tl;
}

// (v, i) beats (w, j) when larger, or equal with a lower index: the first maximum of a scan in order.
__device__ __forceinline__ bool beats(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

__device__ __forceinline__ void warp_argmax(float* v, int* i) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, *v, off);
    const int j = __shfl_xor_sync(0xffffffffu, *i, off);
    if (beats(w, j, *v, *i)) {
      *v = w;
      *i = j;
    }
  }
}

struct Args {
  FeatureParams fp;
  FeatureAux aux;
  const float* x;
  int64_t ld;
  bool key;
  const uint8_t* mask;
  int L_pad;
  float* phi;           // forward: written
  const float* phi_in;  // backward: what the forward map wrote
  float* dphi;
  float* dx;
  int64_t ld_dx;
  const int32_t* offsets;
  int heads, tiles;
};

// sin t_i and cos t_i of the tile's rows, t_i = pi/2 (i + 1)/M for 0-based position i (cosFormer).
__device__ __forceinline__ void tile_angles(const Tile& tl, int L_pad, float* sn, float* cs) {
  for (int i = threadIdx.x; i < tl.n; i += blockDim.x) {
    const double theta = cosformer_angle(tl.i0 + i, L_pad);
    sn[i] = static_cast<float>(sin(theta));
    cs[i] = static_cast<float>(cos(theta));
  }
  __syncthreads();
}

template <MapKind K>
__global__ void __launch_bounds__(kThreads) pointwise_features_kernel(Args a) {
  __shared__ float sn[kTile], cs[kTile];
  const Tile tl = tile_of(a.offsets, a.tiles);
  if (tl.n == 0) return;
  const int h = blockIdx.y, dk = a.fp.dk, m = a.fp.m;
  if (K == MapKind::Cos) tile_angles(tl, a.L_pad, sn, cs);
  for (int idx = threadIdx.x; idx < tl.n * dk; idx += kThreads) {
    const int i = idx / dk, c = idx % dk;
    const int64_t r = tl.base + i;
    const float x = a.x[r * a.ld + static_cast<int64_t>(h) * dk + c];
    const bool masked = a.mask != nullptr && a.mask[r] == 0;
    float* p = a.phi + (r * a.heads + h) * m;
    if (K == MapKind::Elu) {
      p[c] = masked ? 0.0f : elu_feature(x);
    } else if (K == MapKind::Relu) {
      p[c] = masked ? 0.0f : lra::relu(x) + a.fp.kernel_eps;
    } else {
      const float v = lra::relu(x);
      p[c] = masked ? 0.0f : v * sn[i];
      p[dk + c] = masked ? 0.0f : v * cs[i];
    }
  }
}

template <MapKind K>
__global__ void __launch_bounds__(kThreads) pointwise_features_backward_kernel(Args a) {
  __shared__ float sn[kTile], cs[kTile];
  const Tile tl = tile_of(a.offsets, a.tiles);
  if (tl.n == 0) return;
  const int h = blockIdx.y, dk = a.fp.dk, m = a.fp.m;
  if (K == MapKind::Cos) tile_angles(tl, a.L_pad, sn, cs);
  for (int idx = threadIdx.x; idx < tl.n * dk; idx += kThreads) {
    const int i = idx / dk, c = idx % dk;
    const int64_t r = tl.base + i;
    const float x = a.x[r * a.ld + static_cast<int64_t>(h) * dk + c];
    const float* d = a.dphi + (r * a.heads + h) * m;
    float g;
    if (K == MapKind::Elu) {
      g = d[c] * elu_feature_grad(a.phi_in[(r * a.heads + h) * m + c]);
    } else if (K == MapKind::Relu) {
      g = x > 0.0f ? d[c] : 0.0f;
    } else {
      g = x > 0.0f ? sn[i] * d[c] + cs[i] * d[dk + c] : 0.0f;
    }
    a.dx[r * a.ld_dx + static_cast<int64_t>(h) * dk + c] = g;
  }
}

// xh = dk^-1/4 x of row r into the warp's shared memory; returns |xh|^2 / 2 (every lane).
__device__ __forceinline__ float scaled_row(const Args& a, int64_t r, int h, float* xh) {
  const int lane = threadIdx.x % 32, dk = a.fp.dk;
  const float* x = a.x + r * a.ld + static_cast<int64_t>(h) * dk;
  float sq = 0.0f;
  for (int c = lane; c < dk; c += 32) {
    const float v = x[c] * a.fp.scale;
    xh[c] = v;
    sq += v * v;
  }
  __syncwarp();
  return 0.5f * warp_sum(sq);
}

// u_j = xh . W[j] (the lane's features j = lane, lane + 32, ...).
__device__ __forceinline__ float project(const Args& a, const float* xh, int j) {
  float u = 0.0f;
  for (int c = 0; c < a.fp.dk; ++c) u += xh[c] * a.fp.wt[static_cast<int64_t>(c) * a.fp.m + j];
  return u;
}

__global__ void __launch_bounds__(kThreads) projected_features_kernel(Args a) {
  extern __shared__ float smem[];
  const Tile tl = tile_of(a.offsets, a.tiles);
  if (tl.n == 0) return;
  const int h = blockIdx.y, m = a.fp.m, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool favor = a.fp.kind == MapKind::Favor;
  float* xh = smem + warp * a.fp.dk;
  for (int i = warp; i < tl.n; i += kWarps) {
    const int64_t r = tl.base + i, rh = r * a.heads + h;
    const float half = scaled_row(a, r, h, xh);
    const bool masked = a.mask != nullptr && a.mask[r] == 0;
    float* p = a.phi + rh * m;
    float best = -std::numeric_limits<float>::infinity();
    int arg = 0;
    for (int j = lane; j < m; j += 32) {
      const float u = project(a, xh, j);
      if (!favor) {
        p[j] = masked ? 0.0f : lra::relu(u) + a.fp.kernel_eps;
      } else {
        p[j] = u;
        if (u > best) {
          best = u;
          arg = j;
        }
      }
    }
    if (favor) {
      warp_argmax(&best, &arg);
      if (!a.key) {
        const float shift = half + best;
        for (int j = lane; j < m; j += 32) p[j] = (expf(p[j] - shift) + a.fp.feature_eps) * a.fp.isq;
        if (lane == 0) a.aux.qarg[rh] = arg;
      } else if (lane == 0) {
        a.aux.rowmax[rh] = best;
        a.aux.rowarg[rh] = arg;
        a.aux.rowhalf[rh] = half;
      }
    }
    __syncwarp();
  }
}

// Favor keys: s and its argmax per (example, head), from the per-row maxima.
__global__ void __launch_bounds__(kThreads) key_stabiliser_kernel(Args a) {
  __shared__ float sv[kThreads];
  __shared__ int si[kThreads];
  const int b = blockIdx.x, h = blockIdx.y, m = a.fp.m, none = std::numeric_limits<int>::max();
  const int64_t r0 = a.offsets[b];
  const int L = a.offsets[b + 1] - a.offsets[b];
  float best = -std::numeric_limits<float>::infinity();
  int arg = none;
  for (int i = threadIdx.x; i < L; i += kThreads) {
    const int64_t r = r0 + i;
    if (a.mask != nullptr && a.mask[r] == 0) continue;
    if (a.fp.causal) {  // the first real key: the lowest row (each thread's first hit is its lowest)
      arg = i;
      break;
    }
    const float v = a.aux.rowmax[r * a.heads + h];
    const int idx = i * m + a.aux.rowarg[r * a.heads + h];
    if (beats(v, idx, best, arg)) {
      best = v;
      arg = idx;
    }
  }
  sv[threadIdx.x] = best;
  si[threadIdx.x] = arg;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float w = sv[threadIdx.x + s];
      const int j = si[threadIdx.x + s];
      const bool take = a.fp.causal ? j < si[threadIdx.x] : beats(w, j, sv[threadIdx.x], si[threadIdx.x]);
      if (take) {
        sv[threadIdx.x] = w;
        si[threadIdx.x] = j;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    float s = sv[0];
    int k = si[0];
    if (a.fp.causal && k != none) {
      const int64_t rh = (r0 + k) * a.heads + h;
      s = a.aux.rowmax[rh];
      k = k * m + a.aux.rowarg[rh];
    }
    a.aux.kstab[b * a.heads + h] = k == none ? 0.0f : s;
    a.aux.karg[b * a.heads + h] = k == none ? -1 : k;
  }
}

// Favor keys: phi from u (in phi), |xh|^2 / 2 and s; masked rows zero.
__global__ void __launch_bounds__(kThreads) favor_keys_kernel(Args a) {
  const Tile tl = tile_of(a.offsets, a.tiles);
  if (tl.n == 0) return;
  const int h = blockIdx.y, m = a.fp.m;
  const float s = a.aux.kstab[tl.b * a.heads + h];
  for (int idx = threadIdx.x; idx < tl.n * m; idx += kThreads) {
    const int i = idx / m, j = idx % m;
    const int64_t r = tl.base + i, rh = r * a.heads + h;
    float* p = a.phi + rh * m + j;
    const bool masked = a.mask != nullptr && a.mask[r] == 0;
    *p = masked ? 0.0f : (expf(*p - (a.aux.rowhalf[rh] + s)) + a.fp.feature_eps) * a.fp.isq;
  }
}

// Which part of the projected backward a launch does.
enum class Stage {
  Full,       // ReluProj, or Favor queries: dU, then dx
  KeyDU,      // Favor keys: dU (in place of dphi) and dh per row
  KeyInput,   // Favor keys: dx from dU, dh and ds
};

__global__ void __launch_bounds__(kThreads) projected_backward_kernel(Args a, Stage stage) {
  extern __shared__ float smem[];
  const Tile tl = tile_of(a.offsets, a.tiles);
  if (tl.n == 0) return;
  const int h = blockIdx.y, m = a.fp.m, dk = a.fp.dk, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool favor = a.fp.kind == MapKind::Favor;
  float* xh = smem + warp * dk;
  for (int i = warp; i < tl.n; i += kWarps) {
    const int64_t r = tl.base + i, rh = r * a.heads + h;
    scaled_row(a, r, h, xh);
    float* d = a.dphi + rh * m;
    const float* p = a.phi_in + rh * m;
    float dh = 0.0f, add = 0.0f;
    int add_j = -1;  // dU[add_j] += add
    if (!favor) {
      for (int j = lane; j < m; j += 32) d[j] = project(a, xh, j) > 0.0f ? d[j] : 0.0f;
    } else if (stage != Stage::KeyInput) {
      float sum = 0.0f;
      for (int j = lane; j < m; j += 32) {
        const float v = d[j] * (__fmul_rn(p[j], a.fp.sq) - a.fp.feature_eps) * a.fp.isq;
        d[j] = v;
        sum += v;
      }
      dh = -warp_sum(sum);
      if (stage == Stage::KeyDU) {
        if (lane == 0) a.aux.dh[rh] = dh;
      } else {
        add_j = a.aux.qarg[rh];
        add = dh;
      }
    } else {
      dh = a.aux.dh[rh];
      const int k = a.aux.karg[tl.b * a.heads + h];
      if (k >= 0 && k / m == tl.i0 + i) {
        add_j = k % m;
        add = a.aux.ds[tl.b * a.heads + h];
      }
    }
    __syncwarp();
    if (stage != Stage::KeyDU) {
      for (int t = lane; t < dk; t += 32) {
        float acc = 0.0f;
        for (int j = 0; j < m; ++j) {
          const float u = j == add_j ? d[j] + add : d[j];
          acc += u * a.fp.w[static_cast<int64_t>(j) * dk + t];
        }
        a.dx[r * a.ld_dx + static_cast<int64_t>(h) * dk + t] = favor ? (acc + dh * xh[t]) * a.fp.scale
                                                                      : acc * a.fp.scale;
      }
    }
    __syncwarp();
  }
}

// Favor keys: ds = sum of dh over the example's rows, per (example, head).
__global__ void __launch_bounds__(kThreads) head_sum_kernel(Args a) {
  __shared__ float sv[kThreads];
  const int b = blockIdx.x, h = blockIdx.y;
  const int64_t r0 = a.offsets[b];
  const int L = a.offsets[b + 1] - a.offsets[b];
  float s = 0.0f;
  for (int i = threadIdx.x; i < L; i += kThreads) s += a.aux.dh[(r0 + i) * a.heads + h];
  sv[threadIdx.x] = s;
  __syncthreads();
  for (int k = kThreads / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) sv[threadIdx.x] += sv[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) a.aux.ds[b * a.heads + h] = sv[0];
}

dim3 tile_grid(const Layout& lay) {
  return dim3(static_cast<unsigned>(lay.B * lay.tiles), static_cast<unsigned>(lay.heads));
}
dim3 head_grid(const Layout& lay) { return dim3(static_cast<unsigned>(lay.B), static_cast<unsigned>(lay.heads)); }
size_t row_smem(const FeatureParams& fp) { return sizeof(float) * kWarps * static_cast<size_t>(fp.dk); }

Args make_args(const FeatureParams& fp, const FeatureAux& aux, const float* x, int64_t ld, bool key,
               const uint8_t* mask, int L_pad, const Layout& lay) {
  Args a{};
  a.fp = fp;
  a.aux = aux;
  a.x = x;
  a.ld = ld;
  a.key = key;
  a.mask = key ? mask : nullptr;
  a.L_pad = L_pad;
  a.offsets = lay.offsets;
  a.heads = lay.heads;
  a.tiles = lay.tiles;
  return a;
}

}  // namespace

void feature_map(const FeatureParams& fp, const float* x, int64_t ld, bool key, const uint8_t* mask, int L_pad,
                 float* phi, const FeatureAux& aux, const Layout& lay, const Context& ctx) {
  if (lay.rows == 0) return;
  Args a = make_args(fp, aux, x, ld, key, mask, L_pad, lay);
  a.phi = phi;
  switch (fp.kind) {
    case MapKind::Elu:
      pointwise_features_kernel<MapKind::Elu><<<tile_grid(lay), kThreads, 0, ctx.stream>>>(a);
      break;
    case MapKind::Cos:
      pointwise_features_kernel<MapKind::Cos><<<tile_grid(lay), kThreads, 0, ctx.stream>>>(a);
      break;
    case MapKind::Relu:
      pointwise_features_kernel<MapKind::Relu><<<tile_grid(lay), kThreads, 0, ctx.stream>>>(a);
      break;
    case MapKind::ReluProj:
    case MapKind::Favor:
      projected_features_kernel<<<tile_grid(lay), kThreads, row_smem(fp), ctx.stream>>>(a);
      if (fp.kind == MapKind::Favor && key) {
        CUDA_CHECK_LAUNCH();
        key_stabiliser_kernel<<<head_grid(lay), kThreads, 0, ctx.stream>>>(a);
        CUDA_CHECK_LAUNCH();
        favor_keys_kernel<<<tile_grid(lay), kThreads, 0, ctx.stream>>>(a);
      }
      break;
  }
  CUDA_CHECK_LAUNCH();
}

void feature_map_backward(const FeatureParams& fp, const float* x, int64_t ld, bool key, int L_pad,
                          const float* phi, float* dphi, float* dx, int64_t ld_dx, const FeatureAux& aux,
                          const Layout& lay, const Context& ctx) {
  if (lay.rows == 0) return;
  Args a = make_args(fp, aux, x, ld, key, nullptr, L_pad, lay);
  a.phi_in = phi;
  a.dphi = dphi;
  a.dx = dx;
  a.ld_dx = ld_dx;
  switch (fp.kind) {
    case MapKind::Elu:
      pointwise_features_backward_kernel<MapKind::Elu><<<tile_grid(lay), kThreads, 0, ctx.stream>>>(a);
      break;
    case MapKind::Cos:
      pointwise_features_backward_kernel<MapKind::Cos><<<tile_grid(lay), kThreads, 0, ctx.stream>>>(a);
      break;
    case MapKind::Relu:
      pointwise_features_backward_kernel<MapKind::Relu><<<tile_grid(lay), kThreads, 0, ctx.stream>>>(a);
      break;
    case MapKind::ReluProj:
      projected_backward_kernel<<<tile_grid(lay), kThreads, row_smem(fp), ctx.stream>>>(a, Stage::Full);
      break;
    case MapKind::Favor:
      if (!key) {
        projected_backward_kernel<<<tile_grid(lay), kThreads, row_smem(fp), ctx.stream>>>(a, Stage::Full);
        break;
      }
      projected_backward_kernel<<<tile_grid(lay), kThreads, row_smem(fp), ctx.stream>>>(a, Stage::KeyDU);
      CUDA_CHECK_LAUNCH();
      head_sum_kernel<<<head_grid(lay), kThreads, 0, ctx.stream>>>(a);
      CUDA_CHECK_LAUNCH();
      projected_backward_kernel<<<tile_grid(lay), kThreads, row_smem(fp), ctx.stream>>>(a, Stage::KeyInput);
      break;
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace lra::cuda::kernelized
