// Nystromformer on the GPU: the same maths, segments, masks, padding, fallback, pinv_init modes, learned
// convolution and saved state as lib/attn/nystromformer.cpp (whose header states the formulas in full).
//
// Per (example b, head h) = task t = b H + h, mu = key mask, s = dk^-1/4, n = rows up to the last real key:
//   Qs = s mu Q, Ks = s mu K, Vm = mu V;  n > m: Ql, Kl = segment means (segment j = rows
//   [floor(j n/m), floor((j+1) n/m))),  F = softmax(Qs Kl^T),  A = softmax(Ql Kl^T),
//   Bm = softmax(Ql Ks^T, hidden keys at -inf),  W = Bm Vm,  Z_0 = A^T / c (c = the largest column sum of
//   A: per task, or pinv_init=batch the largest over the batch's tasks),  P_k = A Z_k, U1 = 7I - P_k,
//   U2 = 15I - P_k U1, U3 = 13I - P_k U2, Z_{k+1} = 1/4 Z_k U3,  O = F Y + conv(Vm),  Y = Z_iters W.
//   0 < n <= m (the exact fallback): O = softmax(Qs Ks^T, hidden keys at -inf) Vm + conv(Vm).
//   Rows n .. len-1 of an example (padding after its last real key): O = 0, dQ = dK = dV = 0.
// Backward (dS = P (dP - rowsum(dP P)) for F, A, Bm and the fallback's P):
//   dY = F^T dO, dF = dO Y^T, dW = Z^T dY, dBm = dW Vm^T, dVm = Bm^T dW, G = dY W^T;  k = iters-1 .. 0:
//   T1 = 1/4 Z_k^T G (= dU3), G' = 1/4 G U3^T, dP = -T1 U2^T - dU2 U1^T + P^T dU2 with dU2 = -P^T T1,
//   dA += dP Z_k^T, G' += A^T dP, G = G';  then dA += G^T / c, dc = -<G^T, A> / c^2 into column j* of dA
//   (batch: the sum of every task's dc into the column of the task that holds the max, before A's softmax
//   backward: the CPU adds it afterwards through the same linear maps);  dQs = dSF Kl, dKs = dSB^T Ql,
//   dQl = dSA Kl + dSB Ks, dKl = dSA^T Ql + dSF^T Qs, each row of segment j += dQl_j / l_j (dKl_j / l_j);
//   dVm += conv^T(dO), dw_ht += sum_i dO_i . Vm_{i+t-p};  dQ = s mu dQs, dK = s mu dKs, dV = mu dVm.
//
// Products by cuBLAS (fp32, the Context's handle and stream), row-major through gemm() below:
//   per example (host loop over the batch, its real lengths read from the host key mask), strided-batched
//   over the H heads: F or the fallback's logits, Bm, W, O (written straight into io.out, batch stride dv),
//   and in the backward dY, dF (or dS, dVm), dBm, dVm, dQs, dKs, dQl +=, dKl +=;
//   strided-batched over all B H tasks: A, the iteration (P, U2, U3, Z; backward also T1, G', dP, dU2,
//   dA, dP), Y, dW, G, dQl, dKl. Tasks without landmarks (n <= m, empty examples) ride along with A = 0,
//   Z = 0, W = 0, dY = 0, so every product of theirs is exactly 0 and never read.
// Kernels (256 threads; grid-stride grids of at most grid_for's cap; rows found by a binary search over
// dev_offsets):
//   real_lengths   one block per example: n = 1 + the last real key's position (block max).
//   load           (row, head, column): Qs, Ks, Vm into head-major scratch; the forward zeroes io.out.
//   landmarks      (task, j, column): segment means of Qs, Ks (0 for tasks without landmarks).
//   softmax_rows / softmax_grad_rows   one warp per row of F (or the fallback's n x n), A or Bm.
//   column_max     one block per task: A's column sums, the largest and its first column.
//   batch_max      one block: the largest over tasks (first task on ties) into the saved header.
//   pinv_init      (task, i, j): Z_0 = A^T / c.    shifts  (task, i, j): U1 = 7I - P, U2 = 15I, U3 = 13I.
//   pinv_dc        one block per task: <G^T, A>, dA += G^T / c (+ dc into column j*, pinv_init=example).
//   batch_dc       one block: the sum of the tasks' dc into the max's column (pinv_init=batch).
//   spread         (head, row, column): dQs, dKs += the segment's dQl, dKl / l_j.
//   conv_forward / conv_backward_dv   (row, head, column): out += conv(Vm), dVm += conv^T(dO).
//   conv_backward_dw   one block per (task, tap): dO . Vm shifted (block sum);  conv_sum_dw  (head, tap):
//                  the tasks' sums in example order, added to the weight's gradient (deterministic).
//   finish         (row, head, column): dQ = s mu dQs, dK = s mu dKs, dV = mu dVm, 0 after the last key.
// Every reduction has a fixed order: the same bits on every run.
//
// Saved (as on the CPU): a 64-byte header (batch max: c, task, column), then per task W (m x dv) and
// Z_0 .. Z_iters (m x m each); none of it when max_len <= m (every example takes the fallback).
// Scratch, for B examples, R rows, T = B H tasks, m' = m when max_len > m else 0, fw = min(max_len, m):
//   n per example (B ints); Qs, Ks, dQs, dKs (H x R x dk), Vm, dVm (H x R x dv); F, dF (H x R x fw: an
//   example's rows hold its n x m F, or its n x n fallback P, as one block per head); Bm, dBm (H x R x m');
//   Ql, Kl, dQl, dKl (T x m' x dk); A, dA, P, U1, U2, U3, G, G', dP, T1 (T x m' x m'); Y, dY, dW
//   (T x m' x dv); c, dc, column (T); the conv weight's per-task gradient (T x conv_kernel).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "attn/nystromformer.h"
#include "core/arena.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"

namespace lra::cuda {

namespace {

constexpr int kThreads = 256;  // every kernel's block (a power of two: the block reductions halve it)

// The batch-wide max of pinv_init=batch, kept in `saved`: its value, the task and the column that hold it.
struct Header {
  float c;
  int32_t task;
  int32_t col;
};
constexpr size_t kHeaderBytes = 64;
static_assert(sizeof(Header) <= kHeaderBytes, "the header must fit its slot");

// Where the kernels find the batch: device offsets (B + 1) and key mask (R, nullptr = none), the real
// lengths n (B), and the sizes.
struct Geo {
  const int32_t* offsets;
  const uint8_t* mask;
  const int32_t* nlen;
  int B, H, m, dk, dv, fw;
  int64_t R;
};

// The sum of every thread's x over the block (kThreads threads), returned to every thread; `buf` holds
// kThreads floats. Starts and ends with a barrier, so a caller may use it twice in a row.
__device__ float block_sum(float x, float* buf) {
  const int t = threadIdx.x;
  __syncthreads();
  buf[t] = x;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) buf[t] += buf[t + s];
    __syncthreads();
  }
  const float total = buf[0];
  __syncthreads();
  return total;
}

// The block's largest v and, among equal ones, the smallest index, into vbuf[0] and ibuf[0].
__device__ void block_argmax(float v, int i, float* vbuf, int* ibuf) {
  const int t = threadIdx.x;
  vbuf[t] = v;
  ibuf[t] = i;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) {
      const float vo = vbuf[t + s];
      const int io = ibuf[t + s];
      if (vo > vbuf[t] || (vo == vbuf[t] && io < ibuf[t])) {
        vbuf[t] = vo;
        ibuf[t] = io;
      }
    }
    __syncthreads();
  }
}

// n per example: rows up to and including its last real key (every row without a mask).
__global__ void real_lengths(Geo g, int32_t* nlen) {
  __shared__ int buf[kThreads];
  const int b = blockIdx.x, t = threadIdx.x;
  const int r0 = g.offsets[b], len = g.offsets[b + 1] - r0;
  int n = 0;
  if (g.mask == nullptr)
    n = len;
  else
    for (int i = t; i < len; i += kThreads)
      if (g.mask[r0 + i] != 0) n = i + 1;
  buf[t] = n;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) buf[t] = max(buf[t], buf[t + s]);
    __syncthreads();
  }
  if (t == 0) nlen[b] = buf[0];
}

// Qs = s mu Q, Ks = s mu K (H x R x dk), Vm = mu V (H x R x dv); out (when given) = 0 on every row.
__global__ void load(Geo g, const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                     int64_t ld_in, float s, float* __restrict__ qs, float* __restrict__ ks, float* __restrict__ vm,
                     float* __restrict__ out, int64_t ld_out) {
  const int D = max(g.dk, g.dv);
  const int64_t items = g.R * g.H * D;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = it / (static_cast<int64_t>(g.H) * D);
    const int rem = static_cast<int>(it % (static_cast<int64_t>(g.H) * D));
    const int h = rem / D, c = rem % D;
    const bool mu = g.mask == nullptr || g.mask[r] != 0;
    if (c < g.dk) {
      const int64_t src = r * ld_in + static_cast<int64_t>(h) * g.dk + c;
      const int64_t dst = (static_cast<int64_t>(h) * g.R + r) * g.dk + c;
      qs[dst] = mu ? q[src] * s : 0.0f;
      ks[dst] = mu ? k[src] * s : 0.0f;
    }
    if (c < g.dv) {
      const int64_t src = r * ld_in + static_cast<int64_t>(h) * g.dv + c;
      vm[(static_cast<int64_t>(h) * g.R + r) * g.dv + c] = mu ? v[src] : 0.0f;
      if (out != nullptr) out[r * ld_out + static_cast<int64_t>(h) * g.dv + c] = 0.0f;
    }
  }
}

// Ql, Kl (T x m x dk): the means of Qs, Ks over each segment; 0 for tasks without landmarks (n <= m).
__global__ void landmarks(Geo g, const float* __restrict__ qs, const float* __restrict__ ks, float* __restrict__ ql,
                          float* __restrict__ kl) {
  const int64_t items = static_cast<int64_t>(g.B) * g.H * g.m * g.dk;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = it / (static_cast<int64_t>(g.m) * g.dk);
    const int j = static_cast<int>((it / g.dk) % g.m), c = static_cast<int>(it % g.dk);
    const int b = static_cast<int>(t / g.H), h = static_cast<int>(t % g.H);
    const int n = g.nlen[b];
    float sq = 0.0f, sk = 0.0f;
    if (n > g.m) {
      const int a = nystrom_segment_start(j, n, g.m), e = nystrom_segment_start(j + 1, n, g.m);
      const int64_t base = (static_cast<int64_t>(h) * g.R + g.offsets[b] + a) * g.dk + c;
      for (int i = 0; i < e - a; ++i) {
        sq += qs[base + static_cast<int64_t>(i) * g.dk];
        sk += ks[base + static_cast<int64_t>(i) * g.dk];
      }
      sq /= static_cast<float>(e - a);
      sk /= static_cast<float>(e - a);
    }
    ql[it] = sq;
    kl[it] = sk;
  }
}

// The rows a softmax kernel visits: F (with the fallback's P), A or Bm.
enum class RowSet { F, A, Bm };

// Row `item` of the set: its offset from the buffer's start, its length and key mask (nullptr = every
// column). False when the item is no row (past n, or a set its example does not use); *zero when the row
// belongs to a task without landmarks (A: its softmax is 0, so that its products are 0).
__device__ __forceinline__ bool row_of(const Geo& g, RowSet set, int64_t item, int64_t* off, int* len,
                                       const uint8_t** mu, bool* zero) {
  *zero = false;
  *mu = nullptr;
  if (set == RowSet::F) {  // item = h R + r
    const int h = static_cast<int>(item / g.R);
    const int64_t r = item % g.R;
    const int b = example_of(g.offsets, g.B, r);
    const int64_t r0 = g.offsets[b];
    const int n = g.nlen[b], i = static_cast<int>(r - r0);
    if (i >= n) return false;
    if (n > g.m) {
      *off = (static_cast<int64_t>(h) * g.R + r) * g.fw;
      *len = g.m;
    } else {
      *off = (static_cast<int64_t>(h) * g.R + r0) * g.fw + static_cast<int64_t>(i) * n;
      *len = n;
      if (g.mask != nullptr) *mu = g.mask + r0;
    }
    return true;
  }
  const int64_t t = item / g.m;  // item = t m + j
  const int b = static_cast<int>(t / g.H), h = static_cast<int>(t % g.H), j = static_cast<int>(item % g.m);
  const int n = g.nlen[b];
  if (set == RowSet::A) {
    *off = item * g.m;
    *len = g.m;
    *zero = n <= g.m;
    return true;
  }
  if (n <= g.m) return false;
  const int64_t r0 = g.offsets[b];
  *off = (static_cast<int64_t>(h) * g.R + r0) * g.m + static_cast<int64_t>(j) * n;
  *len = n;
  if (g.mask != nullptr) *mu = g.mask + r0;
  return true;
}

__device__ __forceinline__ int64_t row_count(const Geo& g, RowSet set) {
  return set == RowSet::F ? static_cast<int64_t>(g.H) * g.R : static_cast<int64_t>(g.B) * g.H * g.m;
}

// In place, one warp per row: x <- softmax(x) over the visible columns, hidden columns 0.
__global__ void softmax_rows(Geo g, RowSet set, float* __restrict__ base) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const int64_t items = row_count(g, set);
  for (int64_t it = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; it < items; it += warps) {
    int64_t off = 0;
    int len = 0;
    const uint8_t* mu = nullptr;
    bool zero = false;
    if (!row_of(g, set, it, &off, &len, &mu, &zero)) continue;  // the same for the whole warp
    float* x = base + off;
    if (zero) {
      for (int j = lane; j < len; j += 32) x[j] = 0.0f;
      continue;
    }
    float mx = -INFINITY;
    for (int j = lane; j < len; j += 32)
      if (mu == nullptr || mu[j] != 0) mx = fmaxf(mx, x[j]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < len; j += 32) {
      const float e = (mu == nullptr || mu[j] != 0) ? expf(x[j] - mx) : 0.0f;
      x[j] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    for (int j = lane; j < len; j += 32) x[j] = x[j] / sum;  // each lane rereads only what it wrote
  }
}

// In place, one warp per row: dP <- P (dP - rowsum(dP P)), the gradient of the softmax's logits.
__global__ void softmax_grad_rows(Geo g, RowSet set, const float* __restrict__ pbase, float* __restrict__ dbase) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const int64_t items = row_count(g, set);
  for (int64_t it = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; it < items; it += warps) {
    int64_t off = 0;
    int len = 0;
    const uint8_t* mu = nullptr;
    bool zero = false;
    if (!row_of(g, set, it, &off, &len, &mu, &zero)) continue;
    const float* p = pbase + off;
    float* d = dbase + off;
    if (zero) {
      for (int j = lane; j < len; j += 32) d[j] = 0.0f;
      continue;
    }
    float dot = 0.0f;
    for (int j = lane; j < len; j += 32) dot += p[j] * d[j];
    dot = warp_sum(dot);
    for (int j = lane; j < len; j += 32) d[j] = p[j] * (d[j] - dot);
  }
}

// One block per task: c = the largest column sum of A, col = its first column (-inf and 0 without landmarks).
__global__ void column_max(Geo g, const float* __restrict__ a, float* __restrict__ cval, int32_t* __restrict__ col) {
  __shared__ float vbuf[kThreads];
  __shared__ int ibuf[kThreads];
  const int64_t t = blockIdx.x;
  const bool has = g.nlen[t / g.H] > g.m;
  float best = -INFINITY;
  int arg = INT_MAX;
  if (has) {
    const float* A = a + t * g.m * g.m;
    for (int j = threadIdx.x; j < g.m; j += kThreads) {
      float s = 0.0f;
      for (int i = 0; i < g.m; ++i) s += A[static_cast<int64_t>(i) * g.m + j];
      if (s > best) {
        best = s;
        arg = j;
      }
    }
  }
  block_argmax(best, arg, vbuf, ibuf);
  if (threadIdx.x == 0) {
    cval[t] = has ? vbuf[0] : -INFINITY;
    col[t] = has ? ibuf[0] : 0;
  }
}

// One block: the batch's largest c (the first task on ties) with its task and column; task -1 when no
// task has landmarks.
__global__ void batch_max(const float* __restrict__ cval, const int32_t* __restrict__ col, int tasks,
                          Header* __restrict__ hdr) {
  __shared__ float vbuf[kThreads];
  __shared__ int ibuf[kThreads];
  float best = -INFINITY;
  int arg = INT_MAX;
  for (int t = threadIdx.x; t < tasks; t += kThreads)
    if (cval[t] > best) {
      best = cval[t];
      arg = t;
    }
  block_argmax(best, arg, vbuf, ibuf);
  if (threadIdx.x == 0) {
    const bool any = vbuf[0] > -INFINITY;
    hdr->c = vbuf[0];
    hdr->task = any ? ibuf[0] : -1;
    hdr->col = any ? col[ibuf[0]] : 0;
  }
}

// The c a task divides by: its own, or the batch's.
__device__ __forceinline__ float init_c(const float* cval, const Header* hdr, int64_t t) {
  return hdr != nullptr ? hdr->c : cval[t];
}

// Z_0 = A^T / c for tasks with landmarks, 0 for the others. z0 = Z_0 of task 0; tasks `tstride` floats apart.
__global__ void pinv_init(Geo g, const float* __restrict__ a, const float* __restrict__ cval,
                          const Header* __restrict__ hdr, float* __restrict__ z0, int64_t tstride) {
  const int64_t mm = static_cast<int64_t>(g.m) * g.m;
  const int64_t items = static_cast<int64_t>(g.B) * g.H * mm;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = it / mm;
    const int e = static_cast<int>(it % mm), i = e / g.m, j = e % g.m;
    const bool has = g.nlen[t / g.H] > g.m;
    z0[t * tstride + e] = has ? a[t * mm + static_cast<int64_t>(j) * g.m + i] / init_c(cval, hdr, t) : 0.0f;
  }
}

// U1 = 7I - P, U2 = 15I, U3 = 13I (the products add -P U1 and -P U2).
__global__ void shifts(int64_t items, int m, const float* __restrict__ p, float* __restrict__ u1,
                       float* __restrict__ u2, float* __restrict__ u3) {
  const int64_t mm = static_cast<int64_t>(m) * m;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int e = static_cast<int>(it % mm);
    const bool diag = e / m == e % m;
    u1[it] = (diag ? static_cast<float>(kPinvShift1) : 0.0f) - p[it];
    u2[it] = diag ? static_cast<float>(kPinvShift2) : 0.0f;
    u3[it] = diag ? static_cast<float>(kPinvShift3) : 0.0f;
  }
}

// One block per task with landmarks: dA += G^T / c and dc = -<G^T, A> / c^2, into column j* of dA
// (pinv_init=example) or dcs[t] (batch; 0 for tasks without landmarks).
__global__ void pinv_dc(Geo g, const float* __restrict__ a, const float* __restrict__ gz,
                        const float* __restrict__ cval, const int32_t* __restrict__ col,
                        const Header* __restrict__ hdr, float* __restrict__ da, float* __restrict__ dcs) {
  __shared__ float buf[kThreads];
  const int64_t t = blockIdx.x;
  const int m = g.m;
  const int64_t mm = static_cast<int64_t>(m) * m;
  if (g.nlen[t / g.H] <= m) {  // the whole block leaves
    if (threadIdx.x == 0 && hdr != nullptr) dcs[t] = 0.0f;
    return;
  }
  const float* A = a + t * mm;
  const float* G = gz + t * mm;
  float* dA = da + t * mm;
  float part = 0.0f;
  for (int64_t e = threadIdx.x; e < mm; e += kThreads) {
    const int i = static_cast<int>(e / m), j = static_cast<int>(e % m);
    part += G[static_cast<int64_t>(j) * m + i] * A[e];
  }
  const float dot = block_sum(part, buf);
  const float c = init_c(cval, hdr, t);
  const float dc = -dot / (c * c);
  const int jstar = hdr != nullptr ? -1 : col[t];
  for (int64_t e = threadIdx.x; e < mm; e += kThreads) {
    const int i = static_cast<int>(e / m), j = static_cast<int>(e % m);
    float x = dA[e] + G[static_cast<int64_t>(j) * m + i] / c;
    if (j == jstar) x += dc;
    dA[e] = x;
  }
  if (threadIdx.x == 0 && hdr != nullptr) dcs[t] = dc;
}

// One block (pinv_init=batch): the tasks' dc summed, into column hdr->col of task hdr->task's dA.
__global__ void batch_dc(const float* __restrict__ dcs, int tasks, int m, const Header* __restrict__ hdr,
                         float* __restrict__ da) {
  __shared__ float buf[kThreads];
  float part = 0.0f;
  for (int t = threadIdx.x; t < tasks; t += kThreads) part += dcs[t];
  const float dc = block_sum(part, buf);
  const int task = hdr->task;
  if (task < 0) return;
  float* dA = da + static_cast<int64_t>(task) * m * m;
  for (int i = threadIdx.x; i < m; i += kThreads) dA[static_cast<int64_t>(i) * m + hdr->col] += dc;
}

// dQs, dKs (H x R x dk) of every row of an example with landmarks += dQl_j / l_j, dKl_j / l_j of its segment.
__global__ void spread(Geo g, const float* __restrict__ dql, const float* __restrict__ dkl, float* __restrict__ dqs,
                       float* __restrict__ dks) {
  const int64_t items = static_cast<int64_t>(g.H) * g.R * g.dk;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int h = static_cast<int>(it / (g.R * g.dk));
    const int64_t r = (it / g.dk) % g.R;
    const int c = static_cast<int>(it % g.dk);
    const int b = example_of(g.offsets, g.B, r);
    const int n = g.nlen[b], i = static_cast<int>(r - g.offsets[b]);
    if (n <= g.m || i >= n) continue;
    const int j = nystrom_segment_of(i, n, g.m);
    const float f = 1.0f / static_cast<float>(nystrom_segment_start(j + 1, n, g.m) - nystrom_segment_start(j, n, g.m));
    const int64_t src = ((static_cast<int64_t>(b) * g.H + h) * g.m + j) * g.dk + c;
    dqs[it] += f * dql[src];
    dks[it] += f * dkl[src];
  }
}

// out (rows < n) += conv(Vm): tap by tap, as the CPU adds them.
__global__ void conv_forward(Geo g, const float* __restrict__ w, int kernel, const float* __restrict__ vm,
                             float* __restrict__ out, int64_t ld_out) {
  const int64_t items = g.R * g.H * g.dv;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = it / (static_cast<int64_t>(g.H) * g.dv);
    const int h = static_cast<int>((it / g.dv) % g.H), c = static_cast<int>(it % g.dv);
    const int b = example_of(g.offsets, g.B, r);
    const int64_t r0 = g.offsets[b];
    const int n = g.nlen[b], i = static_cast<int>(r - r0);
    if (i >= n) continue;
    float* o = out + r * ld_out + static_cast<int64_t>(h) * g.dv + c;
    const float* x = vm + (static_cast<int64_t>(h) * g.R + r0) * g.dv + c;
    float acc = *o;
    for (int tap = 0; tap < kernel; ++tap) {
      const int src = i + nystrom_tap_offset(tap, kernel);
      if (src >= 0 && src < n) acc += w[h * kernel + tap] * x[static_cast<int64_t>(src) * g.dv];
    }
    *o = acc;
  }
}

// dVm (H x R x dv, rows < n) += conv^T(dO).
__global__ void conv_backward_dv(Geo g, const float* __restrict__ w, int kernel, const float* __restrict__ dout,
                                 int64_t ld_out, float* __restrict__ dvm) {
  const int64_t items = static_cast<int64_t>(g.H) * g.R * g.dv;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int h = static_cast<int>(it / (g.R * g.dv));
    const int64_t r = (it / g.dv) % g.R;
    const int c = static_cast<int>(it % g.dv);
    const int b = example_of(g.offsets, g.B, r);
    const int64_t r0 = g.offsets[b];
    const int n = g.nlen[b], j = static_cast<int>(r - r0);
    if (j >= n) continue;
    const float* dy = dout + r0 * ld_out + static_cast<int64_t>(h) * g.dv + c;
    float acc = dvm[it];
    for (int tap = 0; tap < kernel; ++tap) {
      const int i = j - nystrom_tap_offset(tap, kernel);
      if (i >= 0 && i < n) acc += w[h * kernel + tap] * dy[static_cast<int64_t>(i) * ld_out];
    }
    dvm[it] = acc;
  }
}

// One block per (task, tap): dwt[t kernel + tap] = sum_i dO_i . Vm_{i+off} over the rows whose source is real.
__global__ void conv_backward_dw(Geo g, int kernel, const float* __restrict__ dout, int64_t ld_out,
                                 const float* __restrict__ vm, float* __restrict__ dwt) {
  __shared__ float buf[kThreads];
  const int64_t t = blockIdx.x / kernel;
  const int tap = static_cast<int>(blockIdx.x % kernel);
  const int b = static_cast<int>(t / g.H), h = static_cast<int>(t % g.H);
  const int64_t r0 = g.offsets[b];
  const int n = g.nlen[b], off = nystrom_tap_offset(tap, kernel);
  int i0 = 0, i1 = 0;
  nystrom_tap_rows(off, n, &i0, &i1);
  const int64_t count = i1 > i0 ? static_cast<int64_t>(i1 - i0) * g.dv : 0;
  float part = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += kThreads) {
    const int i = i0 + static_cast<int>(e / g.dv), c = static_cast<int>(e % g.dv);
    part += dout[(r0 + i) * ld_out + static_cast<int64_t>(h) * g.dv + c] *
            vm[(static_cast<int64_t>(h) * g.R + r0 + i + off) * g.dv + c];
  }
  const float s = block_sum(part, buf);
  if (threadIdx.x == 0) dwt[blockIdx.x] = s;
}

// grad (H x kernel) += the tasks' dwt summed over the examples in order.
__global__ void conv_sum_dw(int B, int H, int kernel, const float* __restrict__ dwt, float* __restrict__ grad) {
  const int items = H * kernel;
  for (int it = blockIdx.x * blockDim.x + threadIdx.x; it < items; it += gridDim.x * blockDim.x) {
    const int h = it / kernel, tap = it % kernel;
    float acc = 0.0f;
    for (int b = 0; b < B; ++b) acc += dwt[(static_cast<int64_t>(b) * H + h) * kernel + tap];
    grad[it] += acc;
  }
}

// dQ = s mu dQs, dK = s mu dKs, dV = mu dVm on rows < n; 0 on the example's later rows.
__global__ void finish(Geo g, float s, const float* __restrict__ dqs, const float* __restrict__ dks,
                       const float* __restrict__ dvm, float* __restrict__ dq, float* __restrict__ dk,
                       float* __restrict__ dv, int64_t ld_in) {
  const int D = max(g.dk, g.dv);
  const int64_t items = g.R * g.H * D;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; it < items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = it / (static_cast<int64_t>(g.H) * D);
    const int rem = static_cast<int>(it % (static_cast<int64_t>(g.H) * D));
    const int h = rem / D, c = rem % D;
    const int b = example_of(g.offsets, g.B, r);
    const bool inside = r - g.offsets[b] < g.nlen[b] && (g.mask == nullptr || g.mask[r] != 0);
    if (c < g.dk) {
      const int64_t src = (static_cast<int64_t>(h) * g.R + r) * g.dk + c;
      const int64_t dst = r * ld_in + static_cast<int64_t>(h) * g.dk + c;
      dq[dst] = inside ? dqs[src] * s : 0.0f;
      dk[dst] = inside ? dks[src] * s : 0.0f;
    }
    if (c < g.dv)
      dv[r * ld_in + static_cast<int64_t>(h) * g.dv + c] =
          inside ? dvm[(static_cast<int64_t>(h) * g.R + r) * g.dv + c] : 0.0f;
  }
}

// A row-major operand of a strided-batched product: base, row stride, batch stride (floats).
struct Operand {
  const float* p;
  int64_t ld;
  int64_t stride;
};

class NystromGpu final : public Attention<float> {
 public:
  NystromGpu(const AttnConfig& c, const Context& ctx) : c_(c), ctx_(ctx), o_(NystromOptions::parse(c)) {
    m_ = o_.landmarks;
    mm_ = c.max_len > m_ ? m_ : 0;
    fw_ = std::min(c.max_len, m_);
    LRA_CHECK(c.dk >= 1 && c.dv >= 1, "nystromformer on the GPU: head sizes must be positive (dk = {}, dv = {})",
              c.dk, c.dv);
  }


  size_t saved_bytes(int B, int64_t) const override {
    return kHeaderBytes + static_cast<size_t>(B) * c_.heads * task_bytes();
  }
  size_t scratch_bytes(int B, int64_t rows) const override {
    size_t bytes = 0;
    carve(nullptr, B, rows, &bytes);
    return bytes;
  }

  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch, const AttnStep&) override;
  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep&) override;

 private:
  struct Work {
    int32_t* nlen;
    float *qs, *ks, *vm, *dqs, *dks, *dvm;
    float *f, *df, *bm, *dbm;
    float *ql, *kl, *dql, *dkl;
    float *a, *da, *p, *u1, *u2, *u3, *gz, *gn, *dp, *t1;
    float *y, *dy, *dw;
    float *c, *dc;
    int32_t* col;
    float* dwt;
  };

  // W (m x dv) and Z_0 .. Z_iters (m x m) of one task, 64-byte aligned (0 when no example has landmarks).
  size_t task_bytes() const {
    const size_t m = static_cast<size_t>(mm_);
    return align_up(sizeof(float) * (m * c_.dv + (o_.pinv_iters + 1) * m * m), Arena::kAlign);
  }
  int64_t task_stride() const { return static_cast<int64_t>(task_bytes() / sizeof(float)); }

  // The scratch layout for B examples and R rows from `base` (nullptr: only its size, in *bytes).
  Work carve(void* base, int B, int64_t R, size_t* bytes) const {
    ScratchCarver sc(base);
    const size_t hr = static_cast<size_t>(c_.heads) * static_cast<size_t>(R);
    const size_t T = static_cast<size_t>(B) * c_.heads, m = static_cast<size_t>(mm_);
    const size_t dk = static_cast<size_t>(c_.dk), dv = static_cast<size_t>(c_.dv);
    Work w{};
    w.nlen = sc.take<int32_t>(static_cast<size_t>(B));
    for (float** q : {&w.qs, &w.ks, &w.dqs, &w.dks}) *q = sc.take<float>(hr * dk);
    for (float** q : {&w.vm, &w.dvm}) *q = sc.take<float>(hr * dv);
    for (float** q : {&w.f, &w.df}) *q = sc.take<float>(hr * static_cast<size_t>(fw_));
    for (float** q : {&w.bm, &w.dbm}) *q = sc.take<float>(hr * m);
    for (float** q : {&w.ql, &w.kl, &w.dql, &w.dkl}) *q = sc.take<float>(T * m * dk);
    for (float** q : {&w.a, &w.da, &w.p, &w.u1, &w.u2, &w.u3, &w.gz, &w.gn, &w.dp, &w.t1})
      *q = sc.take<float>(T * m * m);
    for (float** q : {&w.y, &w.dy, &w.dw}) *q = sc.take<float>(T * m * dv);
    w.c = sc.take<float>(T);
    w.dc = sc.take<float>(T);
    w.col = sc.take<int32_t>(T);
    w.dwt = sc.take<float>(T * static_cast<size_t>(o_.conv_kernel));
    *bytes = sc.used();
    return w;
  }

  // Checks the batch and reads each example's n from the host key mask; true when some example has
  // landmarks (n > m).
  bool prepare(const SeqBatch& seq, const AttnIO<float>& io) {
    check_device_batch(seq, c_.max_len, "nystromformer");
    check_gemm_strides(io, c_, "nystromformer");
    n_.assign(static_cast<size_t>(seq.B), 0);
    bool any = false;
    for (int b = 0; b < seq.B; ++b) {
      int n = seq.length(b);
      if (seq.key_mask != nullptr) {
        const uint8_t* mu = seq.key_mask + seq.offsets[b];
        while (n > 0 && mu[n - 1] == 0) --n;
      }
      n_[static_cast<size_t>(b)] = n;
      any = any || n > m_;
    }
    return any;
  }

  Geo geo(const SeqBatch& seq, const Work& w) const {
    Geo g{};
    g.offsets = seq.dev_offsets;
    g.mask = seq.key_mask != nullptr ? seq.dev_key_mask : nullptr;
    g.nlen = w.nlen;
    g.B = seq.B;
    g.H = c_.heads;
    g.m = m_;
    g.dk = c_.dk;
    g.dv = c_.dv;
    g.fw = fw_;
    g.R = seq.rows();
    return g;
  }

  float qk_scale() const { return 1.0f / std::sqrt(std::sqrt(static_cast<float>(c_.dk))); }

  // Row-major C = alpha op(A) op(B) + beta C (M x N, inner K) for `batch` matrices, each operand
  // `stride` floats after the previous: the column-major product C^T = op(B)^T op(A)^T.
  void gemm(bool ta, bool tb, int M, int N, int K, float alpha, Operand A, Operand B, float beta, float* C,
            int64_t ldc, int64_t sc, int batch) const {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           N, M, K, &alpha, B.p, static_cast<int>(B.ld), B.stride, A.p,
                                           static_cast<int>(A.ld), A.stride, &beta, C, static_cast<int>(ldc), sc,
                                           batch));
  }

  // Common first steps of both passes: n, Qs, Ks, Vm (out zeroed when given), and with landmarks Ql, Kl,
  // A = softmax(Ql Kl^T) and its column maxima.
  void front(const SeqBatch& seq, const AttnIO<float>& io, const Geo& g, const Work& w, bool any, float* out) const;
  // Per example: the logits of F (or the fallback's P) and of Bm, then their softmaxes.
  void probabilities(const SeqBatch& seq, const Geo& g, const Work& w, bool any) const;
  // P = A Z, U1 = 7I - P, U2 = 15I - P U1, U3 = 13I - P U2, for every task.
  void products(const float* z, const Work& w, int T) const;

  float* tasks(void* saved) const { return reinterpret_cast<float*>(static_cast<char*>(saved) + kHeaderBytes); }
  // Z_k of task 0 (m x m; the tasks task_stride() floats apart), in the saved task blocks `tk`.
  float* zk(float* tk, int k) const {
    return tk + static_cast<int64_t>(m_) * c_.dv + static_cast<int64_t>(k) * m_ * m_;
  }
  Operand z_op(float* tk, int k) const { return {zk(tk, k), m_, task_stride()}; }

  AttnConfig c_;
  Context ctx_;
  NystromOptions o_;
  int m_ = 1, mm_ = 0, fw_ = 1;
  std::vector<int> n_;  // per example of the current call, from the host key mask
};

void NystromGpu::front(const SeqBatch& seq, const AttnIO<float>& io, const Geo& g, const Work& w, bool any,
                       float* out) const {
  const int T = seq.B * c_.heads;
  real_lengths<<<static_cast<unsigned>(seq.B), kThreads, 0, ctx_.stream>>>(g, w.nlen);
  CUDA_CHECK_LAUNCH();
  const int64_t items = g.R * c_.heads * std::max(c_.dk, c_.dv);
  load<<<grid_for(items, kThreads), kThreads, 0, ctx_.stream>>>(g, io.q, io.k, io.v, io.ld_in, qk_scale(), w.qs,
                                                                 w.ks, w.vm, out, io.ld_out);
  CUDA_CHECK_LAUNCH();
  if (!any) return;
  const int64_t lm = static_cast<int64_t>(T) * m_ * c_.dk;
  landmarks<<<grid_for(lm, kThreads), kThreads, 0, ctx_.stream>>>(g, w.qs, w.ks, w.ql, w.kl);
  CUDA_CHECK_LAUNCH();
  const int64_t mdk = static_cast<int64_t>(m_) * c_.dk, mm = static_cast<int64_t>(m_) * m_;
  gemm(false, true, m_, m_, c_.dk, 1.0f, {w.ql, c_.dk, mdk}, {w.kl, c_.dk, mdk}, 0.0f, w.a, m_, mm, T);
  softmax_rows<<<grid_for(static_cast<int64_t>(T) * m_ * 32, kThreads), kThreads, 0, ctx_.stream>>>(g, RowSet::A,
                                                                                                     w.a);
  CUDA_CHECK_LAUNCH();
  column_max<<<static_cast<unsigned>(T), kThreads, 0, ctx_.stream>>>(g, w.a, w.c, w.col);
  CUDA_CHECK_LAUNCH();
}

void NystromGpu::probabilities(const SeqBatch& seq, const Geo& g, const Work& w, bool any) const {
  const int H = c_.heads, dk = c_.dk;
  const int64_t R = g.R, mdk = static_cast<int64_t>(m_) * dk;
  for (int b = 0; b < seq.B; ++b) {
    const int n = n_[static_cast<size_t>(b)];
    if (n == 0) continue;
    const int64_t r0 = seq.offsets[b];
    const Operand qs{w.qs + r0 * dk, dk, R * dk}, ks{w.ks + r0 * dk, dk, R * dk};
    if (n > m_) {
      const int64_t t0 = static_cast<int64_t>(b) * H;
      // F logits = Qs Kl^T (n x m), Bm logits = Ql Ks^T (m x n).
      gemm(false, true, n, m_, dk, 1.0f, qs, {w.kl + t0 * mdk, dk, mdk}, 0.0f, w.f + r0 * fw_, m_, R * fw_, H);
      gemm(false, true, m_, n, dk, 1.0f, {w.ql + t0 * mdk, dk, mdk}, ks, 0.0f, w.bm + r0 * m_, n, R * m_, H);
    } else {
      // The fallback's logits Qs Ks^T (n x n).
      gemm(false, true, n, n, dk, 1.0f, qs, ks, 0.0f, w.f + r0 * fw_, n, R * fw_, H);
    }
  }
  softmax_rows<<<grid_for(static_cast<int64_t>(H) * R * 32, kThreads), kThreads, 0, ctx_.stream>>>(g, RowSet::F, w.f);
  CUDA_CHECK_LAUNCH();
  if (!any) return;
  const int64_t brows = static_cast<int64_t>(seq.B) * H * m_;
  softmax_rows<<<grid_for(brows * 32, kThreads), kThreads, 0, ctx_.stream>>>(g, RowSet::Bm, w.bm);
  CUDA_CHECK_LAUNCH();
}

void NystromGpu::products(const float* z, const Work& w, int T) const {
  const int64_t mm = static_cast<int64_t>(m_) * m_;
  const Operand A{w.a, m_, mm}, P{w.p, m_, mm};
  gemm(false, false, m_, m_, m_, 1.0f, A, {z, m_, task_stride()}, 0.0f, w.p, m_, mm, T);
  const int64_t items = static_cast<int64_t>(T) * mm;
  shifts<<<grid_for(items, kThreads), kThreads, 0, ctx_.stream>>>(items, m_, w.p, w.u1, w.u2, w.u3);
  CUDA_CHECK_LAUNCH();
  gemm(false, false, m_, m_, m_, -1.0f, P, {w.u1, m_, mm}, 1.0f, w.u2, m_, mm, T);
  gemm(false, false, m_, m_, m_, -1.0f, P, {w.u2, m_, mm}, 1.0f, w.u3, m_, mm, T);
}

void NystromGpu::forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch,
                         const AttnStep&) {
  const bool any = prepare(seq, io);
  if (seq.B == 0 || seq.rows() == 0) return;
  size_t bytes = 0;
  const Work w = carve(scratch, seq.B, seq.rows(), &bytes);
  const Geo g = geo(seq, w);
  const int H = c_.heads, dv = c_.dv, T = seq.B * H;
  const int64_t R = g.R, mm = static_cast<int64_t>(m_) * m_, mdv = static_cast<int64_t>(m_) * dv;
  Header* hdr = static_cast<Header*>(saved);
  float* tk = tasks(saved);
  const int64_t ts = task_stride();

  front(seq, io, g, w, any, io.out);
  if (any) {
    if (o_.batch_init) {
      batch_max<<<1, kThreads, 0, ctx_.stream>>>(w.c, w.col, T, hdr);
      CUDA_CHECK_LAUNCH();
    }
    // W of tasks without landmarks stays 0 (their Z is 0 too), so the batched products below are finite.
    CUDA_CHECK(cudaMemsetAsync(tk, 0, static_cast<size_t>(T) * task_bytes(), ctx_.stream));
    pinv_init<<<grid_for(static_cast<int64_t>(T) * mm, kThreads), kThreads, 0, ctx_.stream>>>(
        g, w.a, w.c, o_.batch_init ? hdr : nullptr, zk(tk, 0), ts);
    CUDA_CHECK_LAUNCH();
  }
  probabilities(seq, g, w, any);
  for (int b = 0; b < seq.B; ++b) {  // W = Bm Vm (m x dv)
    const int n = n_[static_cast<size_t>(b)];
    if (n <= m_) continue;
    const int64_t r0 = seq.offsets[b];
    gemm(false, false, m_, dv, n, 1.0f, {w.bm + r0 * m_, n, R * m_}, {w.vm + r0 * dv, dv, R * dv}, 0.0f,
         tk + static_cast<int64_t>(b) * H * ts, dv, ts, H);
  }
  if (any) {
    for (int k = 0; k < o_.pinv_iters; ++k) {  // Z_{k+1} = 1/4 Z_k U3
      products(zk(tk, k), w, T);
      gemm(false, false, m_, m_, m_, static_cast<float>(kPinvScale), z_op(tk, k), {w.u3, m_, mm}, 0.0f,
           zk(tk, k + 1), m_, ts, T);
    }
    gemm(false, false, m_, dv, m_, 1.0f, z_op(tk, o_.pinv_iters), {tk, dv, ts}, 0.0f, w.y, dv, mdv, T);  // Y = Z W
  }
  for (int b = 0; b < seq.B; ++b) {  // O = F Y, or the fallback's P Vm, into rows < n of io.out
    const int n = n_[static_cast<size_t>(b)];
    if (n == 0) continue;
    const int64_t r0 = seq.offsets[b];
    float* o = io.out + r0 * io.ld_out;
    if (n > m_)
      gemm(false, false, n, dv, m_, 1.0f, {w.f + r0 * fw_, m_, R * fw_},
           {w.y + static_cast<int64_t>(b) * H * mdv, dv, mdv}, 0.0f, o, io.ld_out, dv, H);
    else
      gemm(false, false, n, dv, n, 1.0f, {w.f + r0 * fw_, n, R * fw_}, {w.vm + r0 * dv, dv, R * dv}, 0.0f, o,
           io.ld_out, dv, H);
  }
  if (o_.conv_kernel > 0) {
    conv_forward<<<grid_for(R * H * dv, kThreads), kThreads, 0, ctx_.stream>>>(g, param(0), o_.conv_kernel, w.vm,
                                                                              io.out, io.ld_out);
    CUDA_CHECK_LAUNCH();
  }
}

void NystromGpu::backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& gr,
                          const void* saved, void* scratch, const AttnStep&) {
  const bool any = prepare(seq, io);
  if (seq.B == 0 || seq.rows() == 0) return;
  size_t bytes = 0;
  const Work w = carve(scratch, seq.B, seq.rows(), &bytes);
  const Geo g = geo(seq, w);
  const int H = c_.heads, dk = c_.dk, dv = c_.dv, T = seq.B * H;
  const int64_t R = g.R, mm = static_cast<int64_t>(m_) * m_, mdv = static_cast<int64_t>(m_) * dv,
                mdk = static_cast<int64_t>(m_) * dk, ts = task_stride();
  const Header* hdr = o_.batch_init ? static_cast<const Header*>(saved) : nullptr;
  float* tk = tasks(const_cast<void*>(saved));  // read only: W and Z
  const int64_t ldo = io.ld_out;

  front(seq, io, g, w, any, nullptr);
  probabilities(seq, g, w, any);
  if (any) {
    gemm(false, false, m_, dv, m_, 1.0f, z_op(tk, o_.pinv_iters), {tk, dv, ts}, 0.0f, w.y, dv, mdv, T);  // Y = Z W
    CUDA_CHECK(cudaMemsetAsync(w.dy, 0, sizeof(float) * static_cast<size_t>(T) * mdv, ctx_.stream));
  }
  for (int b = 0; b < seq.B; ++b) {
    const int n = n_[static_cast<size_t>(b)];
    if (n == 0) continue;
    const int64_t r0 = seq.offsets[b];
    const Operand dO{gr.dout + r0 * ldo, ldo, dv};
    if (n > m_) {
      const int64_t t0 = static_cast<int64_t>(b) * H;
      const Operand F{w.f + r0 * fw_, m_, R * fw_};
      gemm(true, false, m_, dv, n, 1.0f, F, dO, 0.0f, w.dy + t0 * mdv, dv, mdv, H);  // dY = F^T dO
      gemm(false, true, n, m_, dv, 1.0f, dO, {w.y + t0 * mdv, dv, mdv}, 0.0f, w.df + r0 * fw_, m_, R * fw_,
           H);  // dF = dO Y^T
    } else {
      const Operand P{w.f + r0 * fw_, n, R * fw_};
      gemm(false, true, n, n, dv, 1.0f, dO, {w.vm + r0 * dv, dv, R * dv}, 0.0f, w.df + r0 * fw_, n, R * fw_,
           H);                                                                                  // dP = dO Vm^T
      gemm(true, false, n, dv, n, 1.0f, P, dO, 0.0f, w.dvm + r0 * dv, dv, R * dv, H);  // dVm = P^T dO
    }
  }
  if (any) {
    gemm(true, false, m_, dv, m_, 1.0f, z_op(tk, o_.pinv_iters), {w.dy, dv, mdv}, 0.0f, w.dw, dv, mdv, T);  // dW
    for (int b = 0; b < seq.B; ++b) {
      const int n = n_[static_cast<size_t>(b)];
      if (n <= m_) continue;
      const int64_t r0 = seq.offsets[b], t0 = static_cast<int64_t>(b) * H;
      const Operand dW{w.dw + t0 * mdv, dv, mdv};
      gemm(false, true, m_, n, dv, 1.0f, dW, {w.vm + r0 * dv, dv, R * dv}, 0.0f, w.dbm + r0 * m_, n, R * m_,
           H);                                                                                      // dBm = dW Vm^T
      gemm(true, false, n, dv, m_, 1.0f, {w.bm + r0 * m_, n, R * m_}, dW, 0.0f, w.dvm + r0 * dv, dv, R * dv,
           H);  // dVm = Bm^T dW
    }
    // The iteration, last step first: G = dZ_{k+1} in gz, dZ_k built in gn, then swapped.
    float *gz = w.gz, *gn = w.gn;
    gemm(false, true, m_, m_, dv, 1.0f, {w.dy, dv, mdv}, {tk, dv, ts}, 0.0f, gz, m_, mm, T);  // G = dY W^T
    CUDA_CHECK(cudaMemsetAsync(w.da, 0, sizeof(float) * static_cast<size_t>(T) * mm, ctx_.stream));
    const Operand P{w.p, m_, mm}, A{w.a, m_, mm}, U1{w.u1, m_, mm}, U2{w.u2, m_, mm}, U3{w.u3, m_, mm},
        T1{w.t1, m_, mm}, dP{w.dp, m_, mm};
    const float q = static_cast<float>(kPinvScale);
    for (int k = o_.pinv_iters - 1; k >= 0; --k) {
      const Operand Zk = z_op(tk, k), G{gz, m_, mm};
      products(Zk.p, w, T);
      gemm(true, false, m_, m_, m_, q, Zk, G, 0.0f, w.t1, m_, mm, T);          // T1 = 1/4 Z_k^T G (dU3)
      gemm(false, true, m_, m_, m_, q, G, U3, 0.0f, gn, m_, mm, T);            // G' = 1/4 G U3^T
      gemm(false, true, m_, m_, m_, -1.0f, T1, U2, 0.0f, w.dp, m_, mm, T);     // dP = -T1 U2^T
      gemm(true, false, m_, m_, m_, -1.0f, P, T1, 0.0f, w.u3, m_, mm, T);      // dU2 = -P^T T1, in U3's place
      gemm(false, true, m_, m_, m_, -1.0f, U3, U1, 1.0f, w.dp, m_, mm, T);     // dP -= dU2 U1^T
      gemm(true, false, m_, m_, m_, 1.0f, P, U3, 1.0f, w.dp, m_, mm, T);       // dP += P^T dU2
      gemm(false, true, m_, m_, m_, 1.0f, dP, Zk, 1.0f, w.da, m_, mm, T);      // dA += dP Z_k^T
      gemm(true, false, m_, m_, m_, 1.0f, A, dP, 1.0f, gn, m_, mm, T);         // G' += A^T dP
      std::swap(gz, gn);
    }
    pinv_dc<<<static_cast<unsigned>(T), kThreads, 0, ctx_.stream>>>(g, w.a, gz, w.c, w.col, hdr, w.da, w.dc);
    CUDA_CHECK_LAUNCH();
    if (hdr != nullptr) {
      batch_dc<<<1, kThreads, 0, ctx_.stream>>>(w.dc, T, m_, hdr, w.da);
      CUDA_CHECK_LAUNCH();
    }
  }
  softmax_grad_rows<<<grid_for(static_cast<int64_t>(H) * R * 32, kThreads), kThreads, 0, ctx_.stream>>>(
      g, RowSet::F, w.f, w.df);
  CUDA_CHECK_LAUNCH();
  if (any) {
    const int64_t rows = static_cast<int64_t>(T) * m_;
    softmax_grad_rows<<<grid_for(rows * 32, kThreads), kThreads, 0, ctx_.stream>>>(g, RowSet::A, w.a, w.da);
    CUDA_CHECK_LAUNCH();
    softmax_grad_rows<<<grid_for(rows * 32, kThreads), kThreads, 0, ctx_.stream>>>(g, RowSet::Bm, w.bm, w.dbm);
    CUDA_CHECK_LAUNCH();
    gemm(false, false, m_, dk, m_, 1.0f, {w.da, m_, mm}, {w.kl, dk, mdk}, 0.0f, w.dql, dk, mdk, T);  // dQl = dSA Kl
    gemm(true, false, m_, dk, m_, 1.0f, {w.da, m_, mm}, {w.ql, dk, mdk}, 0.0f, w.dkl, dk, mdk, T);   // dKl = dSA^T Ql
  }
  for (int b = 0; b < seq.B; ++b) {
    const int n = n_[static_cast<size_t>(b)];
    if (n == 0) continue;
    const int64_t r0 = seq.offsets[b], t0 = static_cast<int64_t>(b) * H;
    const Operand qs{w.qs + r0 * dk, dk, R * dk}, ks{w.ks + r0 * dk, dk, R * dk};
    float* dqs = w.dqs + r0 * dk;
    float* dks = w.dks + r0 * dk;
    if (n > m_) {
      const Operand dSF{w.df + r0 * fw_, m_, R * fw_}, dSB{w.dbm + r0 * m_, n, R * m_};
      gemm(false, false, n, dk, m_, 1.0f, dSF, {w.kl + t0 * mdk, dk, mdk}, 0.0f, dqs, dk, R * dk, H);  // dSF Kl
      gemm(true, false, n, dk, m_, 1.0f, dSB, {w.ql + t0 * mdk, dk, mdk}, 0.0f, dks, dk, R * dk, H);   // dSB^T Ql
      gemm(false, false, m_, dk, n, 1.0f, dSB, ks, 1.0f, w.dql + t0 * mdk, dk, mdk, H);  // dQl += dSB Ks
      gemm(true, false, m_, dk, n, 1.0f, dSF, qs, 1.0f, w.dkl + t0 * mdk, dk, mdk, H);   // dKl += dSF^T Qs
    } else {
      const Operand dS{w.df + r0 * fw_, n, R * fw_};
      gemm(false, false, n, dk, n, 1.0f, dS, ks, 0.0f, dqs, dk, R * dk, H);  // dQs = dS Ks
      gemm(true, false, n, dk, n, 1.0f, dS, qs, 0.0f, dks, dk, R * dk, H);   // dKs = dS^T Qs
    }
  }
  if (any) {
    spread<<<grid_for(static_cast<int64_t>(H) * R * dk, kThreads), kThreads, 0, ctx_.stream>>>(g, w.dql, w.dkl,
                                                                                               w.dqs, w.dks);
    CUDA_CHECK_LAUNCH();
  }
  if (o_.conv_kernel > 0) {
    const int K = o_.conv_kernel;
    conv_backward_dv<<<grid_for(static_cast<int64_t>(H) * R * dv, kThreads), kThreads, 0, ctx_.stream>>>(
        g, param(0), K, gr.dout, ldo, w.dvm);
    CUDA_CHECK_LAUNCH();
    conv_backward_dw<<<static_cast<unsigned>(static_cast<int64_t>(T) * K), kThreads, 0, ctx_.stream>>>(
        g, K, gr.dout, ldo, w.vm, w.dwt);
    CUDA_CHECK_LAUNCH();
    conv_sum_dw<<<grid_for(static_cast<int64_t>(H) * K, kThreads), kThreads, 0, ctx_.stream>>>(seq.B, H, K, w.dwt,
                                                                                               param_grad(0));
    CUDA_CHECK_LAUNCH();
  }
  const int64_t items = R * H * std::max(dk, dv);
  finish<<<grid_for(items, kThreads), kThreads, 0, ctx_.stream>>>(g, qk_scale(), w.dqs, w.dks, w.dvm, gr.dq, gr.dk,
                                                                   gr.dv, io.ld_in);
  CUDA_CHECK_LAUNCH();
}

std::unique_ptr<Attention<float>> make_nystromformer(const AttnConfig& cfg, const Context& ctx) {
  return std::make_unique<NystromGpu>(cfg, ctx);
}

[[maybe_unused]] const bool registered = register_attention("nystromformer", make_nystromformer);

}  // namespace

}  // namespace lra::cuda
