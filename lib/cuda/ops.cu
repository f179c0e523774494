// The dense ops of lib/ops on the GPU (embedding is in ops_embedding.cu). Same maths, shapes and
// gradient convention as the CPU files; every kernel runs on ctx.stream, and every reduction has a
// fixed order, so a result has the same bits on every run.
//
// linear     x: (N, in), W: (out, in), b: (out), y: (N, out)
//            y = x W^T + b;  dx = dy W (overwrite),  dW += dy^T x,  db += colsum(dy)
//            cuBLAS in column-major terms: y^T = W^T' x^T with W read transposed (the row-major swap).
// layernorm  x, y: (N, C); g, b: (C); mean, rstd: (N)
//            mu = mean(x), var = mean((x - mu)^2), rstd = 1/sqrt(var + eps), xhat = (x - mu) rstd,
//            y = g xhat + b
//            backward, dxh = dy g:  dx += rstd (dxh - mean(dxh) - xhat mean(dxh xhat)),
//            dg += sum_rows dy xhat,  db += sum_rows dy
// gelu/relu  y = f(x), dx = dy f'(x) (ops/math.h); relu's backward tests y > 0
// dropout    z_i = [(philox word of i >> 8) >= dropout_threshold(p)]:  y = x z / (1-p),
//            dx = dy z / (1-p);  residual: out = res + h z / (1-p)
// pool       out: (B, D). Cls: out[b] = x[first row of b], dx[first row] = dout[b], other rows 0.
//            Mean: out[b] = sum_r mu_r x[r] / n_b (n_b = sum_r mu_r, 0 rows pool to 0),
//            dx[r] = mu_r dout[b] / n_b
//            Max: out[b][c] = max over rows with mu_r of x[r][c] (0 when none), dx[r*][c] = dout[b][c] at the
//            first such row r* holding it, other rows 0
// pair       pooled: (2B, D) = [u; v];  out: (B, K D) with block k of row b = pair_feature(k, u_b, v_b)
//            (K = 4: u, v, u*v, u-v; K = 2: u, v);  du, dv = pair_feature_grads (overwrite)
// cross-entropy  logits, probs: (B, C):  loss_b = m + log(sum_c exp(z_c - m)) - z_y,  loss = mean_b loss_b;
//            dz = (probs - onehot(y)) / B
// adamw      lra::adamw_element with bc1 = 1 - b1^t, bc2 = 1 - b2^t computed on the host in double
// sum_squares  sum_i x_i^2 in double: kReduceBlocks contiguous parts, then their sum in order
// scale      x *= s
#include <climits>
#include <cmath>

#include "core/rng.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"
#include "cuda/ops.h"

namespace lra::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;  // one warp per row

// Column reductions over rows: a block owns kColW columns; thread (tx, ty) adds rows ty, ty + kColG, ...
// of column tx in order, then the kColG partials are added in order of ty.
constexpr int kColW = 8, kColG = 128;

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ---- linear ------------------------------------------------------------------------------------

// y: (N, out) <- b broadcast over rows
__global__ void broadcast_rows_kernel(float* __restrict__ y, const float* __restrict__ b, int64_t N, int out) {
  const int64_t n = N * out;
  for (int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = b[i % out];
}

// db[c] += sum_r dy[r, c]  (dy: (N, C)); grid: ceil(C / kColW) blocks of (kColW, kColG)
__global__ void column_sum_kernel(float* __restrict__ db, const float* __restrict__ dy, int64_t N, int C) {
  __shared__ float part[kColG][kColW];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.x * kColW + tx;
  float acc = 0.0f;
  if (c < C) {
#pragma unroll 4
    for (int64_t r = ty; r < N; r += kColG) acc += dy[r * C + c];
  }
  part[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < C) {
    float total = 0.0f;
    for (int g = 0; g < kColG; ++g) total += part[g][tx];
    db[c] += total;
  }
}

void check_gemm_dims(int64_t N, int in, int out) {
  LRA_CHECK(N <= INT_MAX, "linear on the GPU: N = {} rows exceeds cuBLAS's int range; lower batch_size or "
                          "max_length", N);
  LRA_CHECK(in > 0 && out > 0, "linear: in = {} and out = {} must be positive", in, out);
}

// ---- layernorm ---------------------------------------------------------------------------------

// One warp per row; block (kThreads), grid ceil(N / kRowsPerBlock).
__global__ void layernorm_forward_kernel(float* y, float* __restrict__ mean, float* __restrict__ rstd,
                                         const float* x, const float* __restrict__ g,
                                         const float* __restrict__ b, int64_t N, int C, float eps) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= N) return;
  const float* xr = x + r * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += xr[c];
  const float mu = warp_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = xr[c] - mu;
    v += d * d;
  }
  const float rs = 1.0f / sqrtf(warp_sum(v) / C + eps);
  float* yr = y + r * C;
  for (int c = lane; c < C; c += 32) yr[c] = (xr[c] - mu) * rs * g[c] + b[c];
  if (lane == 0) {
    mean[r] = mu;
    rstd[r] = rs;
  }
}

// dx += rstd (dy g - m1 - xhat m2), m1 = mean(dy g), m2 = mean(dy g xhat). One warp per row.
__global__ void layernorm_backward_dx_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                             const float* __restrict__ x, const float* __restrict__ mean,
                                             const float* __restrict__ rstd, const float* __restrict__ g,
                                             int64_t N, int C) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= N) return;
  const float* xr = x + r * C;
  const float* dyr = dy + r * C;
  const float mu = mean[r], rs = rstd[r];
  float m1 = 0.0f, m2 = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float dxh = dyr[c] * g[c];
    m1 += dxh;
    m2 += dxh * (xr[c] - mu) * rs;
  }
  m1 = warp_sum(m1) / C;
  m2 = warp_sum(m2) / C;
  float* dxr = dx + r * C;
  for (int c = lane; c < C; c += 32) {
    const float xh = (xr[c] - mu) * rs;
    dxr[c] += rs * (dyr[c] * g[c] - m1 - xh * m2);
  }
}

// dg[c] += sum_r dy xhat, db[c] += sum_r dy; grid ceil(C / kColW) blocks of (kColW, kColG).
__global__ void layernorm_param_grad_kernel(float* __restrict__ dg, float* __restrict__ db,
                                            const float* __restrict__ dy, const float* __restrict__ x,
                                            const float* __restrict__ mean, const float* __restrict__ rstd,
                                            int64_t N, int C) {
  __shared__ float part_g[kColG][kColW], part_b[kColG][kColW];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.x * kColW + tx;
  float ag = 0.0f, ab = 0.0f;
  if (c < C) {
#pragma unroll 4
    for (int64_t r = ty; r < N; r += kColG) {
      const float d = dy[r * C + c];
      ag += d * (x[r * C + c] - mean[r]) * rstd[r];
      ab += d;
    }
  }
  part_g[ty][tx] = ag;
  part_b[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && c < C) {
    float tg = 0.0f, tb = 0.0f;
    for (int k = 0; k < kColG; ++k) {
      tg += part_g[k][tx];
      tb += part_b[k][tx];
    }
    dg[c] += tg;
    db[c] += tb;
  }
}

// ---- activations -------------------------------------------------------------------------------
// The model calls these in place (y == x, dx == dy), so no __restrict__ here.

__global__ void gelu_forward_kernel(float* y, const float* x, int64_t n, GeluKind kind) {
  for (int64_t i = global_thread(); i < n; i += grid_stride())
    y[i] = kind == GeluKind::Tanh ? gelu_tanh(x[i]) : gelu_exact(x[i]);
}

__global__ void gelu_backward_kernel(float* dx, const float* dy, const float* x, int64_t n, GeluKind kind) {
  for (int64_t i = global_thread(); i < n; i += grid_stride())
    dx[i] = dy[i] * (kind == GeluKind::Tanh ? gelu_tanh_grad(x[i]) : gelu_exact_grad(x[i]));
}

__global__ void relu_forward_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = relu(x[i]);
}

__global__ void relu_backward_kernel(float* dx, const float* dy, const float* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// ---- dropout -----------------------------------------------------------------------------------

// One Philox block (stream elements 4b .. 4b+3, b = first/4 + j) per thread; element i of x is stream
// element first + i. y = [res +] (keep ? x s : 0). y may alias x or res: each element is read and written by
// the same thread.
__global__ void dropout_kernel(float* y, const float* x, const float* res, int64_t n, float s, uint32_t thr,
                               uint64_t seed, uint64_t stream, uint64_t first) {
  const uint64_t b0 = first / 4;
  const int64_t blocks = static_cast<int64_t>((first + static_cast<uint64_t>(n) + 3) / 4 - b0);
  for (int64_t j = global_thread(); j < blocks; j += grid_stride()) {
    const uint64_t b = b0 + static_cast<uint64_t>(j);
    const U4 u = philox_block(seed, stream, b);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = static_cast<int64_t>(4 * b + static_cast<uint64_t>(lane) - first);
      if (i >= 0 && i < n) {
        const float v = dropout_keeps(u.x[lane], thr) ? __fmul_rn(x[i], s) : 0.0f;
        y[i] = res != nullptr ? res[i] + v : v;
      }
    }
  }
}

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

// ---- pooling -----------------------------------------------------------------------------------

// grid (ceil(D / 32), B), block (32, 8): thread (tx, ty) adds rows r0 + ty, r0 + ty + 8, ... of column c.
constexpr int kPoolW = 32, kPoolG = 8;

__global__ void pool_forward_kernel(float* __restrict__ out, const float* __restrict__ x,
                                    const int32_t* __restrict__ row_offsets, const uint8_t* __restrict__ key_mask,
                                    int D, Pool kind) {
  __shared__ float part[kPoolG][kPoolW];
  __shared__ int count[kPoolG];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int b = blockIdx.y;
  const int c = blockIdx.x * kPoolW + tx;
  const int64_t r0 = row_offsets[b], r1 = row_offsets[b + 1];
  if (kind == Pool::Cls) {
    if (ty == 0 && c < D) out[static_cast<int64_t>(b) * D + c] = r1 > r0 ? x[r0 * D + c] : 0.0f;
    return;
  }
  float acc = 0.0f;
  int n = 0;
  for (int64_t r = r0 + ty; r < r1; r += kPoolG) {
    if (key_mask != nullptr && key_mask[r] == 0) continue;
    ++n;
    if (c < D) acc += x[r * D + c];
  }
  part[ty][tx] = acc;
  if (tx == 0) count[ty] = n;
  __syncthreads();
  if (ty == 0 && c < D) {
    float total = 0.0f;
    int real = 0;
    for (int k = 0; k < kPoolG; ++k) {
      total += part[k][tx];
      real += count[k];
    }
    out[static_cast<int64_t>(b) * D + c] = real > 0 ? total * (1.0f / static_cast<float>(real)) : 0.0f;
  }
}

// grid (gx, B), block kThreads: the blocks of example b cover its (r1 - r0) x D entries of dx.
__global__ void pool_backward_kernel(float* __restrict__ dx, const float* __restrict__ dout,
                                     const int32_t* __restrict__ row_offsets, const uint8_t* __restrict__ key_mask,
                                     int D, Pool kind) {
  const int b = blockIdx.y;
  const int64_t r0 = row_offsets[b], r1 = row_offsets[b + 1];
  int64_t n = r1 - r0;
  if (kind == Pool::Mean && key_mask != nullptr) {
    n = 0;
    for (int64_t base = r0; base < r1; base += blockDim.x) {
      const int64_t r = base + threadIdx.x;
      n += __syncthreads_count(r < r1 && key_mask[r] != 0);
    }
  }
  const float inv = n > 0 ? 1.0f / static_cast<float>(n) : 0.0f;
  const float* g = dout + static_cast<int64_t>(b) * D;
  const int64_t count = (r1 - r0) * D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const int64_t p = i / D;
    const int c = static_cast<int>(i - p * D);
    const int64_t r = r0 + p;
    float v;
    if (kind == Pool::Cls)
      v = p == 0 ? g[c] : 0.0f;
    else if (kind == Pool::Max)
      v = 0.0f;  // pool_max_backward_kernel then writes each column's one gradient
    else
      v = (n > 0 && (key_mask == nullptr || key_mask[r] != 0)) ? g[c] * inv : 0.0f;
    dx[r * D + c] = v;
  }
}

// Max pooling, one thread per (b, c): the column's first real row holding its largest value, as the CPU's
// argmax_rows finds it (-1 when the example has no real row).
__device__ int64_t pool_argmax(const float* __restrict__ x, const uint8_t* __restrict__ key_mask, int64_t r0,
                               int64_t r1, int D, int c) {
  int64_t best = -1;
  for (int64_t r = r0; r < r1; ++r) {
    if (key_mask != nullptr && key_mask[r] == 0) continue;
    if (best < 0 || x[r * D + c] > x[best * D + c]) best = r;
  }
  return best;
}

__global__ void pool_max_forward_kernel(float* __restrict__ out, const float* __restrict__ x,
                                        const int32_t* __restrict__ row_offsets, const uint8_t* __restrict__ key_mask,
                                        int B, int D) {
  const int64_t n = static_cast<int64_t>(B) * D;
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const int64_t b = i / D;
    const int c = static_cast<int>(i - b * D);
    const int64_t best = pool_argmax(x, key_mask, row_offsets[b], row_offsets[b + 1], D, c);
    out[i] = best >= 0 ? x[best * D + c] : 0.0f;
  }
}

__global__ void pool_max_backward_kernel(float* __restrict__ dx, const float* __restrict__ dout,
                                         const float* __restrict__ x, const int32_t* __restrict__ row_offsets,
                                         const uint8_t* __restrict__ key_mask, int B, int D) {
  const int64_t n = static_cast<int64_t>(B) * D;
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const int64_t b = i / D;
    const int c = static_cast<int>(i - b * D);
    const int64_t best = pool_argmax(x, key_mask, row_offsets[b], row_offsets[b + 1], D, c);
    if (best >= 0) dx[best * D + c] = dout[i];
  }
}

// ---- rotary position embedding -------------------------------------------------------------------

// One thread per (row, head, pair); products and sums rounded separately (no FMA), as the CPU computes them.
__global__ void rope_rotate_kernel(float* __restrict__ x, int64_t ld, const int32_t* __restrict__ row_offsets, int S,
                                   int64_t rows, int heads, int head_dim, const float* __restrict__ cos_table,
                                   const float* __restrict__ sin_table, float sign) {
  const int half = head_dim / 2;
  const int64_t per_row = static_cast<int64_t>(heads) * half;
  const int64_t n = rows * per_row;
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const int64_t r = i / per_row;
    const int rem = static_cast<int>(i - r * per_row);
    const int h = rem / half, k = rem - h * half;
    const int64_t p = r - row_offsets[example_of(row_offsets, S, r)];
    const float c = cos_table[p * half + k], si = sign * sin_table[p * half + k];
    float* v = x + r * ld + static_cast<int64_t>(h) * head_dim;
    const float x1 = v[k], x2 = v[k + half];
    v[k] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, si));
    v[k + half] = __fadd_rn(__fmul_rn(x1, si), __fmul_rn(x2, c));
  }
}

// ---- the dual encoder's pair features ------------------------------------------------------------

// One thread per output element (b, k, c).
__global__ void pair_features_forward_kernel(float* __restrict__ out, const float* __restrict__ pooled, int B, int D,
                                             int K) {
  const int64_t n = static_cast<int64_t>(B) * K * D;
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const int64_t b = i / (static_cast<int64_t>(K) * D);
    const int rem = static_cast<int>(i - b * K * D);
    const int k = rem / D, c = rem - k * D;
    out[i] = pair_feature(k, pooled[b * D + c], pooled[(B + b) * D + c]);
  }
}

// One thread per (b, c): writes du and dv.
__global__ void pair_features_backward_kernel(float* __restrict__ dpooled, const float* __restrict__ dout,
                                              const float* __restrict__ pooled, int B, int D, int K) {
  const int64_t n = static_cast<int64_t>(B) * D;
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const int64_t b = i / D;
    const int c = static_cast<int>(i - b * D);
    const float* g = dout + b * K * D;
    const float g2 = K == 4 ? g[2 * D + c] : 0.0f, g3 = K == 4 ? g[3 * D + c] : 0.0f;
    pair_feature_grads(g[c], g[D + c], g2, g3, pooled[b * D + c], pooled[(B + b) * D + c], dpooled[b * D + c],
                       dpooled[(B + b) * D + c]);
  }
}

// ---- cross-entropy -----------------------------------------------------------------------------

constexpr int kCeThreads = 1024;

// One block: warp w handles rows w, w + 32, ...; each warp adds its rows' losses in order, then thread 0
// adds the warps' sums in order and writes the mean.
__global__ void cross_entropy_forward_kernel(float* __restrict__ probs, float* __restrict__ losses,
                                             const float* __restrict__ logits, const int32_t* __restrict__ labels,
                                             int B, int C, double* __restrict__ loss) {
  __shared__ double warp_total[kCeThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  double total = 0.0;
  for (int b = warp; b < B; b += kCeThreads / 32) {
    const float* z = logits + static_cast<int64_t>(b) * C;
    float* p = probs + static_cast<int64_t>(b) * C;
    float m = -INFINITY;
    for (int c = lane; c < C; c += 32) m = fmaxf(m, z[c]);
    m = warp_max(m);
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) {
      const float e = expf(z[c] - m);
      p[c] = e;
      s += e;
    }
    s = warp_sum(s);
    for (int c = lane; c < C; c += 32) p[c] /= s;
    if (lane == 0) {
      const double l = static_cast<double>(m) + log(static_cast<double>(s)) - static_cast<double>(z[labels[b]]);
      if (losses != nullptr) losses[b] = static_cast<float>(l);
      total += l;
    }
  }
  if (lane == 0) warp_total[warp] = total;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < kCeThreads / 32; ++w) t += warp_total[w];
    *loss = B > 0 ? t / B : 0.0;
  }
}

__global__ void cross_entropy_backward_kernel(float* __restrict__ dlogits, const float* __restrict__ probs,
                                              const int32_t* __restrict__ labels, int B, int C, float inv) {
  const int64_t n = static_cast<int64_t>(B) * C;
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const int64_t b = i / C;
    const int c = static_cast<int>(i - b * C);
    dlogits[i] = (probs[i] - (c == labels[b] ? 1.0f : 0.0f)) * inv;
  }
}

// ---- optimizer helpers -------------------------------------------------------------------------

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, float lr, float b1, float b2, float eps, float wd,
                             float bc1, float bc2) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_element(pi, g[i], mi, vi, lr, b1, b2, eps, wd, bc1, bc2);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

constexpr int kSumThreads = 256;

// Block k adds the squares of [k chunk, (k+1) chunk) in double (thread t: elements t, t + 256, ... in
// order), then a fixed tree over the block's threads.
__global__ void sum_squares_partial_kernel(const float* __restrict__ x, int64_t n, int64_t chunk,
                                           double* __restrict__ partials) {
  __shared__ double sm[kSumThreads];
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t i1 = i0 + chunk < n ? i0 + chunk : n;
  double s = 0.0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += kSumThreads) {
    const double v = x[i];
    s += v * v;
  }
  sm[threadIdx.x] = s;
  __syncthreads();
  for (int h = kSumThreads / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) sm[threadIdx.x] += sm[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = sm[0];
}

// One block of kReduceBlocks threads: a fixed tree over the partial sums.
__global__ void sum_partials_kernel(const double* __restrict__ partials, double* __restrict__ out) {
  __shared__ double sm[kReduceBlocks];
  sm[threadIdx.x] = partials[threadIdx.x];
  __syncthreads();
  for (int h = kReduceBlocks / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) sm[threadIdx.x] += sm[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sm[0];
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float s) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) x[i] *= s;
}

// Blocks per example for the (gx, B) grids: enough for about 8 blocks per SM over the batch, no more than
// an example's average share of `elems` needs.
unsigned blocks_per_example(int64_t elems, int B, const Context& ctx) {
  const int64_t want = (static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 8 + B - 1) / B;
  const int64_t need = (elems / B + kThreads - 1) / kThreads;
  int64_t gx = want < need ? want : need;
  if (gx < 1) gx = 1;
  return static_cast<unsigned>(gx);
}

void check_batch(int B, const char* op) {
  LRA_CHECK(B <= 65535, "{} on the GPU: the batch of {} examples exceeds the grid's 65535; lower batch_size", op,
            B);
}

}  // namespace

// ---- public ops --------------------------------------------------------------------------------

void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t N, int in, int out,
                    const Context& ctx) {
  if (N == 0) return;
  check_gemm_dims(N, in, out);
  float beta = 0.0f;
  if (b != nullptr) {
    broadcast_rows_kernel<<<grid_for(N * out, kThreads), kThreads, 0, ctx.stream>>>(y, b, N, out);
    CUDA_CHECK_LAUNCH();
    beta = 1.0f;
  }
  const float alpha = 1.0f;
  // Column-major: y^T (out x N) = W^T' (out x in) x^T (in x N); row-major W is W^T column-major (ld in).
  CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, out, static_cast<int>(N), in, &alpha, W, in, x, in,
                           &beta, y, out));
}

void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const float* W, int64_t N,
                     int in, int out, const Context& ctx) {
  if (N == 0) return;
  check_gemm_dims(N, in, out);
  const float one = 1.0f, zero = 0.0f;
  if (dx != nullptr) {
    // dx^T (in x N) = W^T (in x out, column-major view of row-major W) dy^T (out x N)
    CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, in, static_cast<int>(N), out, &one, W, in, dy, out,
                             &zero, dx, in));
  }
  // dW^T (in x out) += x^T (in x N) (dy^T)^T (N x out)
  CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, static_cast<int>(N), &one, x, in, dy, out,
                           &one, dW, in));
  if (db != nullptr) {
    column_sum_kernel<<<(out + kColW - 1) / kColW, dim3(kColW, kColG), 0, ctx.stream>>>(db, dy, N, out);
    CUDA_CHECK_LAUNCH();
  }
}

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* g, const float* b,
                       int64_t N, int C, float eps, const Context& ctx) {
  if (N == 0) return;
  const int64_t blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  layernorm_forward_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx.stream>>>(y, mean, rstd, x, g, b, N, C,
                                                                                      eps);
  CUDA_CHECK_LAUNCH();
}

void layernorm_backward(float* dx, float* dg, float* db, const float* dy, const float* x, const float* mean,
                        const float* rstd, const float* g, int64_t N, int C, const Context& ctx) {
  if (N == 0) return;
  const int64_t blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  layernorm_backward_dx_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx.stream>>>(dx, dy, x, mean, rstd, g,
                                                                                          N, C);
  CUDA_CHECK_LAUNCH();
  layernorm_param_grad_kernel<<<(C + kColW - 1) / kColW, dim3(kColW, kColG), 0, ctx.stream>>>(dg, db, dy, x, mean,
                                                                                             rstd, N, C);
  CUDA_CHECK_LAUNCH();
}

void gelu_forward(float* y, const float* x, int64_t n, GeluKind kind, const Context& ctx) {
  if (n == 0) return;
  gelu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(y, x, n, kind);
  CUDA_CHECK_LAUNCH();
}

void gelu_backward(float* dx, const float* dy, const float* x, int64_t n, GeluKind kind, const Context& ctx) {
  if (n == 0) return;
  gelu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(dx, dy, x, n, kind);
  CUDA_CHECK_LAUNCH();
}

void relu_forward(float* y, const float* x, int64_t n, const Context& ctx) {
  if (n == 0) return;
  relu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(y, x, n);
  CUDA_CHECK_LAUNCH();
}

void relu_backward(float* dx, const float* dy, const float* y, int64_t n, const Context& ctx) {
  if (n == 0) return;
  relu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(dx, dy, y, n);
  CUDA_CHECK_LAUNCH();
}

void dropout_forward(float* y, const float* x, int64_t n, float p, uint64_t seed, uint64_t stream, uint64_t first,
                     const Context& ctx) {
  if (n == 0) return;
  if (p <= 0.0f) {
    if (y != x)
      CUDA_CHECK(cudaMemcpyAsync(y, x, sizeof(float) * static_cast<size_t>(n), cudaMemcpyDeviceToDevice, ctx.stream));
    return;
  }
  const float s = 1.0f / (1.0f - p);
  dropout_kernel<<<grid_for(n / 4 + 2, kThreads), kThreads, 0, ctx.stream>>>(y, x, nullptr, n, s,
                                                                             dropout_threshold(p), seed, stream, first);
  CUDA_CHECK_LAUNCH();
}

void dropout_backward(float* dx, const float* dy, int64_t n, float p, uint64_t seed, uint64_t stream,
                      uint64_t first, const Context& ctx) {
  dropout_forward(dx, dy, n, p, seed, stream, first, ctx);
}

void residual_dropout_forward(float* out, const float* res, const float* h, int64_t n, float p, uint64_t seed,
                              uint64_t stream, uint64_t first, const Context& ctx) {
  if (n == 0) return;
  if (p <= 0.0f) {
    add_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(out, res, h, n);
    CUDA_CHECK_LAUNCH();
    return;
  }
  const float s = 1.0f / (1.0f - p);
  dropout_kernel<<<grid_for(n / 4 + 2, kThreads), kThreads, 0, ctx.stream>>>(out, h, res, n, s,
                                                                             dropout_threshold(p), seed, stream, first);
  CUDA_CHECK_LAUNCH();
}

void pool_forward(float* out, const float* x, const int32_t* row_offsets, const uint8_t* key_mask, int B, int D,
                  Pool kind, const Context& ctx) {
  if (B == 0 || D == 0) return;
  check_batch(B, "pool_forward");
  if (kind == Pool::Max) {
    const int64_t n = static_cast<int64_t>(B) * D;
    pool_max_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(out, x, row_offsets, key_mask, B, D);
    CUDA_CHECK_LAUNCH();
    return;
  }
  pool_forward_kernel<<<dim3((D + kPoolW - 1) / kPoolW, B), dim3(kPoolW, kPoolG), 0, ctx.stream>>>(
      out, x, row_offsets, key_mask, D, kind);
  CUDA_CHECK_LAUNCH();
}

void pool_backward(float* dx, const float* dout, const float* x, const int32_t* row_offsets, const uint8_t* key_mask,
                   int B, int D, int64_t rows, Pool kind, const Context& ctx) {
  if (B == 0 || D == 0 || rows == 0) return;
  check_batch(B, "pool_backward");
  const unsigned gx = blocks_per_example(rows * D, B, ctx);
  pool_backward_kernel<<<dim3(gx, B), kThreads, 0, ctx.stream>>>(dx, dout, row_offsets, key_mask, D, kind);
  CUDA_CHECK_LAUNCH();
  if (kind == Pool::Max) {
    const int64_t n = static_cast<int64_t>(B) * D;
    pool_max_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(dx, dout, x, row_offsets, key_mask,
                                                                               B, D);
    CUDA_CHECK_LAUNCH();
  }
}

void rope_rotate(float* x, int64_t ld, const int32_t* row_offsets, int S, int64_t rows, int heads, int head_dim,
                 const float* cos_table, const float* sin_table, bool inverse, const Context& ctx) {
  const int64_t n = rows * heads * (head_dim / 2);
  if (n == 0) return;
  check_batch(S, "rope_rotate");
  rope_rotate_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(x, ld, row_offsets, S, rows, heads, head_dim,
                                                                         cos_table, sin_table, inverse ? -1.0f : 1.0f);
  CUDA_CHECK_LAUNCH();
}

void pair_features_forward(float* out, const float* pooled, int B, int D, Interaction kind, const Context& ctx) {
  const int64_t n = static_cast<int64_t>(B) * pair_blocks(kind) * D;
  if (n == 0) return;
  pair_features_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(out, pooled, B, D,
                                                                                  pair_blocks(kind));
  CUDA_CHECK_LAUNCH();
}

void pair_features_backward(float* dpooled, const float* dout, const float* pooled, int B, int D, Interaction kind,
                            const Context& ctx) {
  const int64_t n = static_cast<int64_t>(B) * D;
  if (n == 0) return;
  pair_features_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(dpooled, dout, pooled, B, D,
                                                                                   pair_blocks(kind));
  CUDA_CHECK_LAUNCH();
}

void cross_entropy_forward(float* probs, float* losses, const float* logits, const int32_t* labels, int B, int C,
                           double* loss, const Context& ctx) {
  cross_entropy_forward_kernel<<<1, kCeThreads, 0, ctx.stream>>>(probs, losses, logits, labels, B, C, loss);
  CUDA_CHECK_LAUNCH();
}

void cross_entropy_backward(float* dlogits, const float* probs, const int32_t* labels, int B, int C,
                            const Context& ctx) {
  if (B == 0 || C == 0) return;
  const float inv = 1.0f / static_cast<float>(B);
  cross_entropy_backward_kernel<<<grid_for(static_cast<int64_t>(B) * C, kThreads), kThreads, 0, ctx.stream>>>(
      dlogits, probs, labels, B, C, inv);
  CUDA_CHECK_LAUNCH();
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamW& hp, int64_t t,
                  const Context& ctx) {
  if (n == 0) return;
  const float bc1 = static_cast<float>(1.0 - std::pow(hp.beta1, static_cast<double>(t)));
  const float bc2 = static_cast<float>(1.0 - std::pow(hp.beta2, static_cast<double>(t)));
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(
      p, g, m, v, n, static_cast<float>(hp.lr), static_cast<float>(hp.beta1), static_cast<float>(hp.beta2),
      static_cast<float>(hp.eps), static_cast<float>(hp.weight_decay), bc1, bc2);
  CUDA_CHECK_LAUNCH();
}

void sum_squares(const float* x, int64_t n, double* out, double* partials, const Context& ctx) {
  const int64_t chunk = (n + kReduceBlocks - 1) / kReduceBlocks;
  sum_squares_partial_kernel<<<kReduceBlocks, kSumThreads, 0, ctx.stream>>>(x, n, chunk, partials);
  CUDA_CHECK_LAUNCH();
  sum_partials_kernel<<<1, kReduceBlocks, 0, ctx.stream>>>(partials, out);
  CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* x, int64_t n, float s, const Context& ctx) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(x, n, s);
  CUDA_CHECK_LAUNCH();
}

}  // namespace lra::cuda
