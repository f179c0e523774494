// Sparse Sinkhorn attention on the GPU: the same maths, masks, padding, attention-dropout stream, learned
// weights and saved state as lib/attn/sinkhorn.cpp, whose header derives the formulas; the options and the
// element-wise maths (Sinkhorn steps, softmax of a part, dS, indices) are lib/attn/sinkhorn.h's, shared.
//
// Per example b (n rows, nb = ceil(n / w) blocks of w rows) and head h, tau = dk^-1/2, mu = key mask (0 also
// for the missing rows of the last block), K~ = mu K, V~ = mu V, A = the blocks with a real key:
//   forward:  s_m = sum_j K~_mj;  mlp: Z1 = s W1_h + b1_h, A1 = relu(Z1), Z2 = A1 W2_h[:, :nb] + b2_h[:nb],
//             R = relu(Z2);  linear: R = Z2 = s W[:, :nb]
//             X_0 = R[A, A] / temperature; steps: X <- X - lse over each row (row step) or column;
//             Pi = exp(X_last) on A x A, 0 elsewhere;  [K^ | V^] = Pi^T [K~ | V~] (blocks as rows)
//             per active query block l and query i: S_i = tau q_i [K~_l ; K^_l]^T (unseen keys -inf),
//             P = softmax(S) (per half with combine=sum), LSE saved, P' = P z / (1-p), O_i = P'_i [V~_l ; V^_l];
//             an inactive block's queries output 0 (LSE = +inf)
//   backward: G = (dO [V~_l ; V^_l]^T) z / (1-p), dS = P (G - D), D = sum P G (per part), P' = P z / (1-p)
//             dQ = tau dS [K~_l ; K^_l],  [dK~_l | dK^_l] = tau dS^T Q,  [dV~_l | dV^_l] = P'^T dO
//             dPi = [K~ | V~] [dK^ | dV^]^T,  [dK~ | dV~] += Pi [dK^ | dV^]
//             dX_last = dPi Pi on A x A; each step back: dX = dY - exp(Y) sum(dY) along its rows / columns;
//             dR = dX_0 / temperature on A x A;  mlp: dZ2 = dR [Z2 > 0], dZ1 = (dZ2 W2_h^T) [Z1 > 0],
//             ds = dZ1 W1_h^T;  linear: ds = dR W^T;  dK = mu (dK~ + ds_m), dV = mu dV~
//             weights: per block m the task writes its factor-table row (s, A1, dZ1, dZ2 or s, dR) and after
//             the tasks dW1_h += S^T dZ1, dW2_h += A1^T dZ2 (one strided-batched GEMM each over the heads),
//             db1_h, db2_h += column sums, linear dW += S^T dR (one GEMM): a fixed order, the same bits
//             every run, as on the CPU.
//
// Kernels (256 threads; examples of no rows and blocks past an example's last return at once):
//   sinkhorn_blocks        grid B:         which blocks are active (pos: index in the active list or -1,
//                                          act: the list, na: its length) and which sorted slots are seen
//   sinkhorn_gather        grid (nbm,H,B): [K~ | V~] of each block (hidden and missing rows zero)
//   sinkhorn_sort          grid (H,B):     one block per (example, head) task: s, the sort net, the Sinkhorn
//                                          steps (one thread per row or column of X), Pi
//   cuBLAS, per example:   [K^ | V^] = Pi^T [K~ | V~], strided-batched over the heads
//   sinkhorn_attend        grid (nbm,H,B): one block per query block: the bq x 2w scores into a tile in
//                                          scratch (thread per score), softmax per row and part (thread per
//                                          row), dropout (thread per score), O (thread per output value)
//   sinkhorn_attend_backward grid (nbm,H,B): scores and G again, P, dS, P', then dQ, the block's
//                                          [dK~_l | dV~_l] and [dK^_l | dV^_l] (each value by one thread,
//                                          summing over the block's queries in order)
//   cuBLAS, per example:   dPi = [K~ | V~] [dK^ | dV^]^T and [dK~ | dV~] += Pi [dK^ | dV^], batched over heads
//   sinkhorn_sort_backward grid (H,B):     back through Pi, the steps and the sort net: ds, factor rows
//   sinkhorn_key_grads     grid (nbm,H,B): dK = mu (dK~ + ds_m), dV = mu dV~ of the block's rows
//   cuBLAS + column_sums:  the weight gradients (+=) from the factor table
// Each value is written by one thread; the phases of a block are separated by __syncthreads (the tiles
// live in global memory, which __syncthreads makes visible within the block). No atomics.
//
// Saved: LSE per (row, head, part), as on the CPU. Scratch (carve), for GB = rows / w + B block slots
// (example b's blocks from sinkhorn_block_base), T = B H tasks, N = ceil(max_len / w):
//   pos, act (GB ints), na (B ints), vis (B w bytes); [K~ | V~], [K^ | V^] and their gradients
//   (GB x H x w (dk + dv) floats each); the score tile and the G tile (rows x H x 2w floats each); per task
//   s, Z1, A1, dZ1, ds (N x dk), Z2, Pi, dPi, dX, dR (N x N), X_0 .. X_last ((steps + 1) x N x N); the factor
//   table (GB x H x slot_width). Nothing is kept between calls; the backward recomputes what the forward did.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>

#include "attn/sinkhorn.h"
#include "core/arena.h"
#include "core/rng.h"
#include "cuda/attention.h"
#include "cuda/check.h"

namespace lra::cuda {

namespace {

constexpr int kThreads = 256;

// Everything a kernel reads: the options, the call's inputs and outputs, the weights and the scratch.
struct Params {
  SinkhornOptions o;
  int heads = 0, dk = 0, dv = 0;
  int fw = 0;  // w (dk + dv): the floats of one block's [K | V] (w x dk, then w x dv) per head
  int sw = 0;  // columns of a factor-table row
  float tau = 1.0f, temp = 1.0f;
  AttnDropout drop;
  const int32_t* offsets = nullptr;  // B + 1, device
  const uint8_t* mask = nullptr;     // rows, device; nullptr = every key real
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ld_in = 0;
  float* out = nullptr;
  int64_t ld_out = 0;
  const float* dout = nullptr;
  float* gdq = nullptr;
  float* gdk = nullptr;
  float* gdv = nullptr;
  float* lse = nullptr;  // (rows, heads, parts)
  // mlp: W1 (H, dk, dk), b1 (H, dk), W2 (H, dk, mb), b2 (H, mb); linear: W (dk, mb) in w1.
  const float* w1 = nullptr;
  const float* b1 = nullptr;
  const float* w2 = nullptr;
  const float* b2 = nullptr;
  // Scratch (see the header).
  int32_t* pos = nullptr;
  int32_t* act = nullptr;
  int32_t* na = nullptr;
  uint8_t* vis = nullptr;
  float *kvt = nullptr, *kvh = nullptr, *dkvt = nullptr, *dkvh = nullptr;
  float *sc = nullptr, *gt = nullptr;
  float *s = nullptr, *z1 = nullptr, *a1 = nullptr, *dz1 = nullptr, *ds = nullptr;
  float *z2 = nullptr, *pi = nullptr, *dpi = nullptr, *dx = nullptr, *dr = nullptr;
  float* logs = nullptr;
  float* slots = nullptr;
};

// Example b: its first row, length, blocks and first block slot.
struct Example {
  int64_t r0;
  int n;
  int nb;
  int64_t gb0;
};

__device__ __forceinline__ Example example(const Params& p, int b) {
  Example e;
  e.r0 = p.offsets[b];
  e.n = p.offsets[b + 1] - p.offsets[b];
  e.nb = (e.n + p.o.block - 1) / p.o.block;
  e.gb0 = sinkhorn_block_base(e.r0, p.o.block, b);
  return e;
}

// Whether position r of the example is a key the attention sees (r < n and not masked).
__device__ __forceinline__ bool real_key(const Params& p, const Example& e, int r) {
  return r < e.n && (p.mask == nullptr || p.mask[e.r0 + r] != 0);
}

// Block slot gb's [K | V] of head h in a per-block array.
__device__ __forceinline__ float* kv_at(float* base, const Params& p, int64_t gb, int h) {
  return base + (gb * p.heads + h) * static_cast<int64_t>(p.fw);
}

// The 2w tile entries of packed query row r, head h.
__device__ __forceinline__ float* tile_row(float* base, const Params& p, int64_t r, int h) {
  return base + (r * p.heads + h) * static_cast<int64_t>(2 * p.o.block);
}

// Attention dropout keeps Philox element i (the CPU's test on the same word).
__device__ __forceinline__ bool kept(const Params& p, uint64_t i) {
  return dropout_keeps(philox_block(p.drop.seed, p.drop.stream, i >> 2).x[i & 3], p.drop.thr);
}

// The per-task areas of task (b, h).
struct Task {
  float *s, *z1, *a1, *dz1, *ds;  // N x dk
  float *z2, *pi, *dpi, *dr;      // N x N (row stride N)
  float* dx;                      // na x na (row stride na)
  float* logs;                    // (steps + 1) matrices of na x na, N x N apart
};

__device__ __forceinline__ Task task(const Params& p, int b, int h) {
  const int64_t t = static_cast<int64_t>(b) * p.heads + h, N = p.o.blocks;
  const int64_t nd = N * p.dk, nn = N * N;
  Task k;
  k.s = p.s + t * nd;
  k.z1 = p.z1 + t * nd;
  k.a1 = p.a1 + t * nd;
  k.dz1 = p.dz1 + t * nd;
  k.ds = p.ds + t * nd;
  k.z2 = p.z2 + t * nn;
  k.pi = p.pi + t * nn;
  k.dpi = p.dpi + t * nn;
  k.dr = p.dr + t * nn;
  k.dx = p.dx + t * nn;
  k.logs = p.logs + t * (p.o.steps() + 1) * nn;
  return k;
}

__global__ void __launch_bounds__(kThreads) sinkhorn_blocks(Params p) {
  const int b = blockIdx.x;
  const Example e = example(p, b);
  if (e.n == 0) return;
  const int w = p.o.block;
  // 1 / -1 marks first; thread 0 then numbers the active blocks in order.
  for (int m = threadIdx.x; m < e.nb; m += blockDim.x) {
    bool any = false;
    for (int j = 0; j < w && !any; ++j) any = real_key(p, e, m * w + j);
    p.pos[e.gb0 + m] = any ? 1 : -1;
  }
  for (int j = threadIdx.x; j < w; j += blockDim.x) {
    bool any = false;
    for (int m = 0; m < e.nb && !any; ++m) any = real_key(p, e, m * w + j);
    p.vis[static_cast<int64_t>(b) * w + j] = any ? 1 : 0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int count = 0;
    for (int m = 0; m < e.nb; ++m)
      if (p.pos[e.gb0 + m] >= 0) {
        p.act[e.gb0 + count] = m;
        p.pos[e.gb0 + m] = count++;
      }
    p.na[b] = count;
  }
}

__global__ void __launch_bounds__(kThreads) sinkhorn_gather(Params p) {
  const int m = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Example e = example(p, b);
  if (m >= e.nb) return;
  const int w = p.o.block, kw = w * p.dk;
  float* dst = kv_at(p.kvt, p, e.gb0 + m, h);
  for (int i = threadIdx.x; i < p.fw; i += blockDim.x) {
    const bool key = i < kw;
    const int j = key ? i / p.dk : (i - kw) / p.dv;
    const int c = key ? i % p.dk : (i - kw) % p.dv;
    const int r = m * w + j;
    float x = 0.0f;
    if (real_key(p, e, r)) {
      const int64_t row = (e.r0 + r) * p.ld_in;
      x = key ? p.k[row + static_cast<int64_t>(h) * p.dk + c] : p.v[row + static_cast<int64_t>(h) * p.dv + c];
    }
    dst[i] = x;
  }
}

__global__ void __launch_bounds__(kThreads) sinkhorn_sort(Params p) {
  const int h = blockIdx.x, b = blockIdx.y;
  const Example e = example(p, b);
  if (e.n == 0) return;
  const Task t = task(p, b, h);
  const int nb = e.nb, d = p.dk, N = p.o.blocks, mb = p.o.max_blocks, w = p.o.block, na = p.na[b];
  const int32_t* act = p.act + e.gb0;
  const int32_t* pos = p.pos + e.gb0;
  // Summaries s_m = sum_j K~_mj.
  for (int i = threadIdx.x; i < nb * d; i += blockDim.x) {
    const int m = i / d, c = i % d;
    const float* kb = kv_at(p.kvt, p, e.gb0 + m, h);
    float acc = 0.0f;
    for (int j = 0; j < w; ++j) acc += kb[j * d + c];
    t.s[i] = acc;
  }
  __syncthreads();
  // The sort net's Z2 (mlp, with Z1 and A1) or R (linear) of all nb blocks.
  if (p.o.mlp) {
    const float* W1 = p.w1 + static_cast<int64_t>(h) * d * d;
    const float* b1 = p.b1 + static_cast<int64_t>(h) * d;
    const float* W2 = p.w2 + static_cast<int64_t>(h) * d * mb;
    const float* b2 = p.b2 + static_cast<int64_t>(h) * mb;
    for (int i = threadIdx.x; i < nb * d; i += blockDim.x) {
      const int m = i / d, c = i % d;
      float acc = 0.0f;
      for (int x = 0; x < d; ++x) acc = fmaf(t.s[m * d + x], W1[x * d + c], acc);
      acc += b1[c];
      t.z1[i] = acc;
      t.a1[i] = fmaxf(acc, 0.0f);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nb * nb; i += blockDim.x) {
      const int m = i / nb, l = i % nb;
      float acc = 0.0f;
      for (int c = 0; c < d; ++c) acc = fmaf(t.a1[m * d + c], W2[c * mb + l], acc);
      t.z2[m * N + l] = acc + b2[l];
    }
  } else {
    for (int i = threadIdx.x; i < nb * nb; i += blockDim.x) {
      const int m = i / nb, l = i % nb;
      float acc = 0.0f;
      for (int x = 0; x < d; ++x) acc = fmaf(t.s[m * d + x], p.w1[x * mb + l], acc);
      t.z2[m * N + l] = acc;
    }
  }
  __syncthreads();
  // X_0 = R[A, A] / temperature, then the normalisation steps (each line by one thread).
  for (int i = threadIdx.x; i < na * na; i += blockDim.x) {
    const float r = t.z2[act[i / na] * N + act[i % na]];
    t.logs[i] = (p.o.mlp ? fmaxf(r, 0.0f) : r) / p.temp;
  }
  __syncthreads();
  const int64_t nn = static_cast<int64_t>(N) * N;
  const int steps = p.o.steps();
  for (int k = 1; k <= steps; ++k) {
    const float* X = t.logs + (k - 1) * nn;
    float* Y = t.logs + k * nn;
    if (p.o.row_step(k)) {
      for (int i = threadIdx.x; i < na; i += blockDim.x) sinkhorn_normalise(X + i * na, Y + i * na, na, 1);
    } else {
      for (int j = threadIdx.x; j < na; j += blockDim.x) sinkhorn_normalise(X + j, Y + j, na, na);
    }
    __syncthreads();
  }
  // Pi = exp(X_last) on A x A, 0 elsewhere.
  const float* Xl = t.logs + steps * nn;
  for (int i = threadIdx.x; i < nb * nb; i += blockDim.x) {
    const int pm = pos[i / nb], pl = pos[i % nb];
    t.pi[(i / nb) * N + i % nb] = (pm >= 0 && pl >= 0) ? expf(Xl[pm * na + pl]) : 0.0f;
  }
}

// The scores tau q_i [K~_l ; K^_l]^T of query block l's bq rows into the score tile (-inf where the key is
// hidden or the sorted slot unseen) and, with `grad`, dO_i [V~_l ; V^_l]^T into the G tile.
__device__ void block_scores(const Params& p, const Example& e, int b, int h, int l, int bq, bool grad) {
  const int w = p.o.block, w2 = 2 * w, dk = p.dk, dv = p.dv;
  const int64_t gb = e.gb0 + l, q0 = e.r0 + static_cast<int64_t>(l) * w;
  const float* local = kv_at(p.kvt, p, gb, h);
  const float* sorted = kv_at(p.kvh, p, gb, h);
  for (int i = threadIdx.x; i < bq * w2; i += blockDim.x) {
    const int row = i / w2, j = i % w2;
    const bool srt = j >= w;
    const int jj = srt ? j - w : j;
    const float* kv = srt ? sorted : local;
    const bool seen = srt ? p.vis[static_cast<int64_t>(b) * w + jj] != 0 : real_key(p, e, l * w + jj);
    float s = -INFINITY;
    if (seen) {
      const float* qr = p.q + (q0 + row) * p.ld_in + static_cast<int64_t>(h) * dk;
      const float* kr = kv + static_cast<int64_t>(jj) * dk;
      float acc = 0.0f;
      for (int c = 0; c < dk; ++c) acc = fmaf(qr[c] * p.tau, kr[c], acc);
      s = acc;
    }
    tile_row(p.sc, p, q0 + row, h)[j] = s;
    if (grad) {
      const float* go = p.dout + (q0 + row) * p.ld_out + static_cast<int64_t>(h) * dv;
      const float* vr = kv + static_cast<int64_t>(w) * dk + static_cast<int64_t>(jj) * dv;
      float acc = 0.0f;
      for (int c = 0; c < dv; ++c) acc = fmaf(go[c], vr[c], acc);
      tile_row(p.gt, p, q0 + row, h)[j] = acc;
    }
  }
}

__global__ void __launch_bounds__(kThreads) sinkhorn_attend(Params p) {
  const int l = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Example e = example(p, b);
  if (l >= e.nb) return;
  const int w = p.o.block, w2 = 2 * w, dk = p.dk, dv = p.dv, parts = p.o.parts;
  const int bq = min(w, e.n - l * w);
  const int64_t q0 = e.r0 + static_cast<int64_t>(l) * w, gb = e.gb0 + l;
  if (p.pos[gb] < 0) {  // no real key in the block: its queries output 0
    for (int i = threadIdx.x; i < bq * dv; i += blockDim.x)
      p.out[(q0 + i / dv) * p.ld_out + static_cast<int64_t>(h) * dv + i % dv] = 0.0f;
    for (int i = threadIdx.x; i < bq * parts; i += blockDim.x)
      p.lse[((q0 + i / parts) * p.heads + h) * parts + i % parts] = INFINITY;
    return;
  }
  block_scores(p, e, b, h, l, bq, false);
  __syncthreads();
  for (int i = threadIdx.x; i < bq; i += blockDim.x) {
    float* row = tile_row(p.sc, p, q0 + i, h);
    for (int part = 0; part < parts; ++part) {
      const int c0 = p.o.part_begin(part);
      p.lse[((q0 + i) * p.heads + h) * parts + part] = sinkhorn_softmax(row + c0, p.o.part_end(part) - c0);
    }
  }
  __syncthreads();
  if (p.drop.on) {
    for (int i = threadIdx.x; i < bq * w2; i += blockDim.x) {
      const int row = i / w2, j = i % w2;
      float* x = tile_row(p.sc, p, q0 + row, h) + j;
      *x = kept(p, dropout_element(p.drop.rows, q0 + row, h, p.heads, 2 * w) + j) ? *x * p.drop.scale : 0.0f;
    }
    __syncthreads();
  }
  const float* vl = kv_at(p.kvt, p, gb, h) + static_cast<int64_t>(w) * dk;
  const float* vh = kv_at(p.kvh, p, gb, h) + static_cast<int64_t>(w) * dk;
  for (int i = threadIdx.x; i < bq * dv; i += blockDim.x) {
    const int row = i / dv, c = i % dv;
    const float* P = tile_row(p.sc, p, q0 + row, h);
    float acc = 0.0f;
    for (int j = 0; j < w; ++j) acc = fmaf(P[j], vl[j * dv + c], acc);
    for (int j = 0; j < w; ++j) acc = fmaf(P[w + j], vh[j * dv + c], acc);
    p.out[(q0 + row) * p.ld_out + static_cast<int64_t>(h) * dv + c] = acc;
  }
}

__global__ void __launch_bounds__(kThreads) sinkhorn_attend_backward(Params p) {
  const int l = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Example e = example(p, b);
  if (l >= e.nb) return;
  const int w = p.o.block, w2 = 2 * w, dk = p.dk, dv = p.dv, parts = p.o.parts;
  const int bq = min(w, e.n - l * w);
  const int64_t q0 = e.r0 + static_cast<int64_t>(l) * w, gb = e.gb0 + l;
  float* dl = kv_at(p.dkvt, p, gb, h);  // [dK~_l | dV~_l]
  float* dh = kv_at(p.dkvh, p, gb, h);  // [dK^_l | dV^_l]
  if (p.pos[gb] < 0) {  // an inactive block: no gradient to its queries, keys or sorted block
    for (int i = threadIdx.x; i < bq * dk; i += blockDim.x)
      p.gdq[(q0 + i / dk) * p.ld_in + static_cast<int64_t>(h) * dk + i % dk] = 0.0f;
    for (int i = threadIdx.x; i < p.fw; i += blockDim.x) {
      dl[i] = 0.0f;
      dh[i] = 0.0f;
    }
    return;
  }
  block_scores(p, e, b, h, l, bq, true);
  __syncthreads();
  // P = exp(S - LSE of its part) (0 where unseen: S = -inf), G = G z / (1-p).
  const int part_w = w2 / parts;
  for (int i = threadIdx.x; i < bq * w2; i += blockDim.x) {
    const int row = i / w2, j = i % w2;
    const float L = p.lse[((q0 + row) * p.heads + h) * parts + j / part_w];
    float* s = tile_row(p.sc, p, q0 + row, h) + j;
    *s = expf(*s - L);
    if (p.drop.on) {
      float* g = tile_row(p.gt, p, q0 + row, h) + j;
      *g = kept(p, dropout_element(p.drop.rows, q0 + row, h, p.heads, 2 * w) + j) ? *g * p.drop.scale : 0.0f;
    }
  }
  __syncthreads();
  // dS = P (G - D) per row and part, into the G tile.
  for (int i = threadIdx.x; i < bq; i += blockDim.x) {
    const float* P = tile_row(p.sc, p, q0 + i, h);
    float* G = tile_row(p.gt, p, q0 + i, h);
    for (int part = 0; part < parts; ++part) {
      const int c0 = p.o.part_begin(part);
      sinkhorn_score_grad(P + c0, G + c0, p.o.part_end(part) - c0);
    }
  }
  __syncthreads();
  if (p.drop.on) {  // P' = P z / (1-p), into the score tile
    for (int i = threadIdx.x; i < bq * w2; i += blockDim.x) {
      const int row = i / w2, j = i % w2;
      float* x = tile_row(p.sc, p, q0 + row, h) + j;
      *x = kept(p, dropout_element(p.drop.rows, q0 + row, h, p.heads, 2 * w) + j) ? *x * p.drop.scale : 0.0f;
    }
    __syncthreads();
  }
  const float* kl = kv_at(p.kvt, p, gb, h);
  const float* kh = kv_at(p.kvh, p, gb, h);
  // dQ = tau dS [K~_l ; K^_l].
  for (int i = threadIdx.x; i < bq * dk; i += blockDim.x) {
    const int row = i / dk, c = i % dk;
    const float* G = tile_row(p.gt, p, q0 + row, h);
    float acc = 0.0f;
    for (int j = 0; j < w; ++j) acc = fmaf(G[j], kl[j * dk + c], acc);
    for (int j = 0; j < w; ++j) acc = fmaf(G[w + j], kh[j * dk + c], acc);
    p.gdq[(q0 + row) * p.ld_in + static_cast<int64_t>(h) * dk + c] = acc * p.tau;
  }
  // dK~_l = tau dS_loc^T Q, dK^_l = tau dS_srt^T Q (every one of the w rows, 0 for unseen keys).
  for (int i = threadIdx.x; i < w * dk; i += blockDim.x) {
    const int j = i / dk, c = i % dk;
    float accl = 0.0f, acch = 0.0f;
    for (int row = 0; row < bq; ++row) {
      const float* G = tile_row(p.gt, p, q0 + row, h);
      const float qs = p.q[(q0 + row) * p.ld_in + static_cast<int64_t>(h) * dk + c] * p.tau;
      accl = fmaf(G[j], qs, accl);
      acch = fmaf(G[w + j], qs, acch);
    }
    dl[i] = accl;
    dh[i] = acch;
  }
  // dV~_l = P'_loc^T dO, dV^_l = P'_srt^T dO.
  const int64_t kw = static_cast<int64_t>(w) * dk;
  for (int i = threadIdx.x; i < w * dv; i += blockDim.x) {
    const int j = i / dv, c = i % dv;
    float accl = 0.0f, acch = 0.0f;
    for (int row = 0; row < bq; ++row) {
      const float* P = tile_row(p.sc, p, q0 + row, h);
      const float go = p.dout[(q0 + row) * p.ld_out + static_cast<int64_t>(h) * dv + c];
      accl = fmaf(P[j], go, accl);
      acch = fmaf(P[w + j], go, acch);
    }
    dl[kw + i] = accl;
    dh[kw + i] = acch;
  }
}

__global__ void __launch_bounds__(kThreads) sinkhorn_sort_backward(Params p) {
  const int h = blockIdx.x, b = blockIdx.y;
  const Example e = example(p, b);
  if (e.n == 0) return;
  const Task t = task(p, b, h);
  const int nb = e.nb, d = p.dk, N = p.o.blocks, mb = p.o.max_blocks, na = p.na[b];
  if (na == 0) {  // every key hidden: no sort, ds = 0 and no factor rows (the table stays 0), as on the CPU
    for (int i = threadIdx.x; i < nb * d; i += blockDim.x) t.ds[i] = 0.0f;
    return;
  }
  const int32_t* act = p.act + e.gb0;
  const int32_t* pos = p.pos + e.gb0;
  // dX_last = dPi Pi on A x A, then back through the steps (each line by one thread).
  for (int i = threadIdx.x; i < na * na; i += blockDim.x) {
    const int at = act[i / na] * N + act[i % na];
    t.dx[i] = t.dpi[at] * t.pi[at];
  }
  __syncthreads();
  const int64_t nn = static_cast<int64_t>(N) * N;
  for (int k = p.o.steps(); k >= 1; --k) {
    const float* Y = t.logs + k * nn;
    if (p.o.row_step(k)) {
      for (int i = threadIdx.x; i < na; i += blockDim.x) sinkhorn_normalise_backward(t.dx + i * na, Y + i * na, na, 1);
    } else {
      for (int j = threadIdx.x; j < na; j += blockDim.x) sinkhorn_normalise_backward(t.dx + j, Y + j, na, na);
    }
    __syncthreads();
  }
  // dR = dX_0 / temperature on A x A (mlp: dZ2 = dR [Z2 > 0]).
  for (int i = threadIdx.x; i < nb * nb; i += blockDim.x) {
    const int m = i / nb, l = i % nb, pm = pos[m], pl = pos[l];
    float g = (pm >= 0 && pl >= 0) ? t.dx[pm * na + pl] / p.temp : 0.0f;
    if (p.o.mlp && !(t.z2[m * N + l] > 0.0f)) g = 0.0f;
    t.dr[m * N + l] = g;
  }
  __syncthreads();
  // Factor row of block m: slot row (gb0 + m) H + h.
  const int64_t slot_stride = static_cast<int64_t>(p.heads) * p.sw;
  float* slot0 = p.slots + (e.gb0 * p.heads + h) * p.sw;
  if (p.o.mlp) {
    const float* W1 = p.w1 + static_cast<int64_t>(h) * d * d;
    const float* W2 = p.w2 + static_cast<int64_t>(h) * d * mb;
    for (int i = threadIdx.x; i < nb * d; i += blockDim.x) {
      const int m = i / d, c = i % d;
      float acc = 0.0f;
      for (int l = 0; l < nb; ++l) acc = fmaf(t.dr[m * N + l], W2[c * mb + l], acc);
      t.dz1[i] = t.z1[i] > 0.0f ? acc : 0.0f;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nb * d; i += blockDim.x) {
      const int m = i / d, x = i % d;
      float acc = 0.0f;
      for (int c = 0; c < d; ++c) acc = fmaf(t.dz1[m * d + c], W1[x * d + c], acc);
      t.ds[i] = acc;
    }
    const int cols = 3 * d + nb;
    for (int i = threadIdx.x; i < nb * cols; i += blockDim.x) {
      const int m = i / cols, c = i % cols;
      const float x = c < d ? t.s[m * d + c]
                      : c < 2 * d ? t.a1[m * d + c - d]
                      : c < 3 * d ? t.dz1[m * d + c - 2 * d]
                                  : t.dr[m * N + c - 3 * d];
      slot0[m * slot_stride + c] = x;
    }
  } else {
    for (int i = threadIdx.x; i < nb * d; i += blockDim.x) {
      const int m = i / d, x = i % d;
      float acc = 0.0f;
      for (int l = 0; l < nb; ++l) acc = fmaf(t.dr[m * N + l], p.w1[x * mb + l], acc);
      t.ds[i] = acc;
    }
    const int cols = d + nb;
    for (int i = threadIdx.x; i < nb * cols; i += blockDim.x) {
      const int m = i / cols, c = i % cols;
      slot0[m * slot_stride + c] = c < d ? t.s[m * d + c] : t.dr[m * N + c - d];
    }
  }
}

__global__ void __launch_bounds__(kThreads) sinkhorn_key_grads(Params p) {
  const int l = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const Example e = example(p, b);
  if (l >= e.nb) return;
  const int w = p.o.block, dk = p.dk, dv = p.dv;
  const int bq = min(w, e.n - l * w);
  const int64_t q0 = e.r0 + static_cast<int64_t>(l) * w;
  const float* dl = kv_at(p.dkvt, p, e.gb0 + l, h);
  const float* ds = task(p, b, h).ds + static_cast<int64_t>(l) * dk;
  for (int i = threadIdx.x; i < bq * dk; i += blockDim.x) {
    const int row = i / dk, c = i % dk;
    p.gdk[(q0 + row) * p.ld_in + static_cast<int64_t>(h) * dk + c] =
        real_key(p, e, l * w + row) ? dl[i] + ds[c] : 0.0f;
  }
  const int64_t kw = static_cast<int64_t>(w) * dk;
  for (int i = threadIdx.x; i < bq * dv; i += blockDim.x) {
    const int row = i / dv, c = i % dv;
    p.gdv[(q0 + row) * p.ld_in + static_cast<int64_t>(h) * dv + c] = real_key(p, e, l * w + row) ? dl[kw + i] : 0.0f;
  }
}

// grad[h len + c] += sum over the table's blocks (in order) of column col0 + c of head h's rows.
__global__ void column_sums(const float* slots, int64_t blocks, int heads, int sw, int col0, int len, float* grad) {
  const int64_t items = static_cast<int64_t>(heads) * len;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int h = static_cast<int>(i / len), c = static_cast<int>(i % len);
    float acc = 0.0f;
    for (int64_t k = 0; k < blocks; ++k) acc += slots[(k * heads + h) * sw + col0 + c];
    grad[i] += acc;
  }
}

class SinkhornGpu final : public Attention<float> {
 public:
  SinkhornGpu(const AttnConfig& c, const Context& ctx) : c_(c), ctx_(ctx), o_(SinkhornOptions::parse(c)) {
    LRA_CHECK(c.heads >= 1 && c.heads <= 65535,
              "sinkhorn attention on the GPU takes 1 .. 65535 heads (a grid dimension), got {}; use --device cpu",
              c.heads);
    const int64_t fw = static_cast<int64_t>(o_.block) * (c.dk + c.dv);
    LRA_CHECK(fw * c.heads <= INT_MAX,
              "sinkhorn attention on the GPU: block x (dk + dv) x heads = {} x {} x {} = {} exceeds the 32-bit "
              "leading dimension of its cuBLAS products ({}); use a smaller block or --device cpu",
              o_.block, c.dk + c.dv, c.heads, fw * c.heads, INT_MAX);
    fw_ = static_cast<int>(fw);
    sw_ = o_.slot_width(c.dk);
    LRA_CHECK(static_cast<int64_t>(sw_) * c.heads <= INT_MAX,
              "sinkhorn attention on the GPU: the weight-gradient table's rows ({} heads x {} columns) exceed the "
              "32-bit leading dimension of its cuBLAS products; use a smaller max_blocks or --device cpu",
              c.heads, sw_);
  }


  // LSE per (row, head, part), as on the CPU.
  size_t saved_bytes(int, int64_t rows) const override {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads * o_.parts, Arena::kAlign);
  }
  size_t scratch_bytes(int B, int64_t rows) const override {
    size_t bytes = 0;
    carve(nullptr, B, rows, &bytes);
    return bytes;
  }

  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch,
               const AttnStep& step) override {
    check_batch(seq);
    if (seq.B == 0 || seq.rows() == 0) return;
    Params p = params(seq, io, scratch, step);
    p.lse = static_cast<float*>(saved);
    prepare(seq, p);
    sinkhorn_attend<<<block_grid(seq), kThreads, 0, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
  }

  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep& step) override {
    check_batch(seq);
    if (seq.B == 0 || seq.rows() == 0) return;
    Params p = params(seq, io, scratch, step);
    p.lse = const_cast<float*>(static_cast<const float*>(saved));
    p.dout = g.dout;
    p.gdq = g.dq;
    p.gdk = g.dk;
    p.gdv = g.dv;
    prepare(seq, p);
    const int64_t blocks = sinkhorn_table_blocks(seq.B, seq.rows(), o_.block);
    CUDA_CHECK(cudaMemsetAsync(p.slots, 0, sizeof(float) * static_cast<size_t>(blocks) * c_.heads * sw_,
                               ctx_.stream));
    sinkhorn_attend_backward<<<block_grid(seq), kThreads, 0, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    // Through the sorting, per example (its blocks), batched over the heads.
    const float one = 1.0f, zero = 0.0f;
    const int N = o_.blocks, H = c_.heads;
    const int64_t nn = static_cast<int64_t>(N) * N, ld = static_cast<int64_t>(H) * fw_;
    for (int b = 0; b < seq.B; ++b) {
      const int n = seq.length(b);
      if (n == 0) continue;
      const int nb = (n + o_.block - 1) / o_.block;
      const int64_t kv = sinkhorn_block_base(seq.offsets[b], o_.block, b) * ld;
      float* pi = p.pi + static_cast<int64_t>(b) * H * nn;
      float* dpi = p.dpi + static_cast<int64_t>(b) * H * nn;
      // dPi (nb x nb, row-major, ld N) = [K~ | V~] [dK^ | dV^]^T: column-major dPi^T = [dK^|dV^] [K~|V~]^T.
      CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_.blas, CUBLAS_OP_T, CUBLAS_OP_N, nb, nb, fw_, &one, p.dkvh + kv,
                                             static_cast<int>(ld), fw_, p.kvt + kv, static_cast<int>(ld), fw_, &zero,
                                             dpi, N, nn, H));
      // [dK~ | dV~] += Pi [dK^ | dV^]: column-major [dK~|dV~]^T += [dK^|dV^]^T Pi^T.
      CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_.blas, CUBLAS_OP_N, CUBLAS_OP_N, fw_, nb, nb, &one, p.dkvh + kv,
                                             static_cast<int>(ld), fw_, pi, N, nn, &one, p.dkvt + kv,
                                             static_cast<int>(ld), fw_, H));
    }
    sinkhorn_sort_backward<<<task_grid(seq), kThreads, 0, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    sinkhorn_key_grads<<<block_grid(seq), kThreads, 0, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    reduce_weight_grads(p, blocks);
  }

 private:
  // The scratch layout for B examples and `rows` rows from `base` (nullptr: only its size, in *bytes).
  Params carve(void* base, int B, int64_t rows, size_t* bytes) const {
    ScratchCarver sc(base);
    const size_t GB = static_cast<size_t>(sinkhorn_table_blocks(B, rows, o_.block)), H = c_.heads;
    const size_t T = static_cast<size_t>(B) * H, N = o_.blocks, nd = N * c_.dk, nn = N * N;
    const size_t mlp_nd = o_.mlp ? nd : 0;
    const size_t kv = GB * H * fw_, tile = static_cast<size_t>(rows) * H * 2 * o_.block;
    Params p;
    p.pos = sc.take<int32_t>(GB);
    p.act = sc.take<int32_t>(GB);
    p.na = sc.take<int32_t>(B);
    p.vis = sc.take<uint8_t>(static_cast<size_t>(B) * o_.block);
    p.kvt = sc.take<float>(kv);
    p.kvh = sc.take<float>(kv);
    p.dkvt = sc.take<float>(kv);
    p.dkvh = sc.take<float>(kv);
    p.sc = sc.take<float>(tile);
    p.gt = sc.take<float>(tile);
    p.s = sc.take<float>(T * nd);
    p.z1 = sc.take<float>(T * mlp_nd);
    p.a1 = sc.take<float>(T * mlp_nd);
    p.dz1 = sc.take<float>(T * mlp_nd);
    p.ds = sc.take<float>(T * nd);
    p.z2 = sc.take<float>(T * nn);
    p.pi = sc.take<float>(T * nn);
    p.dpi = sc.take<float>(T * nn);
    p.dx = sc.take<float>(T * nn);
    p.dr = sc.take<float>(T * nn);
    p.logs = sc.take<float>(T * static_cast<size_t>(o_.steps() + 1) * nn);
    p.slots = sc.take<float>(GB * H * static_cast<size_t>(sw_));
    *bytes = sc.used();
    return p;
  }

  void check_batch(const SeqBatch& seq) const {
    check_device_batch(seq, c_.max_len, "sinkhorn attention");
    LRA_CHECK(seq.B <= 65535, "sinkhorn attention on the GPU takes at most 65535 examples per call (got {})", seq.B);
    LRA_CHECK(sinkhorn_table_blocks(seq.B, seq.rows(), o_.block) * c_.heads <= INT_MAX,
              "sinkhorn attention on the GPU: {} rows in blocks of {} over {} heads exceed the 32-bit sizes of its "
              "cuBLAS products; use smaller batches or --device cpu",
              seq.rows(), o_.block, c_.heads);
  }

  dim3 block_grid(const SeqBatch& seq) const {
    return dim3(static_cast<unsigned>(o_.blocks), static_cast<unsigned>(c_.heads), static_cast<unsigned>(seq.B));
  }
  dim3 task_grid(const SeqBatch& seq) const {
    return dim3(static_cast<unsigned>(c_.heads), static_cast<unsigned>(seq.B));
  }

  Params params(const SeqBatch& seq, const AttnIO<float>& io, void* scratch, const AttnStep& step) const {
    size_t bytes = 0;
    Params p = carve(scratch, seq.B, seq.rows(), &bytes);
    p.o = o_;
    p.heads = c_.heads;
    p.dk = c_.dk;
    p.dv = c_.dv;
    p.fw = fw_;
    p.sw = sw_;
    p.tau = 1.0f / std::sqrt(static_cast<float>(c_.dk));
    p.temp = static_cast<float>(o_.temperature);
    p.drop = attn_dropout(c_, step);
    p.offsets = seq.dev_offsets;
    p.mask = seq.key_mask != nullptr ? seq.dev_key_mask : nullptr;
    p.q = io.q;
    p.k = io.k;
    p.v = io.v;
    p.ld_in = io.ld_in;
    p.out = io.out;
    p.ld_out = io.ld_out;
    p.w1 = param(0);
    if (o_.mlp) {
      p.b1 = param(1);
      p.w2 = param(2);
      p.b2 = param(3);
    }
    return p;
  }

  // The blocks, K~ and V~, the sort net, the Sinkhorn steps, Pi and the sorted blocks of every task.
  void prepare(const SeqBatch& seq, const Params& p) const {
    sinkhorn_blocks<<<static_cast<unsigned>(seq.B), kThreads, 0, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    sinkhorn_gather<<<block_grid(seq), kThreads, 0, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    sinkhorn_sort<<<task_grid(seq), kThreads, 0, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    const float one = 1.0f, zero = 0.0f;
    const int N = o_.blocks, H = c_.heads;
    const int64_t nn = static_cast<int64_t>(N) * N, ld = static_cast<int64_t>(H) * fw_;
    for (int b = 0; b < seq.B; ++b) {
      const int n = seq.length(b);
      if (n == 0) continue;
      const int nb = (n + o_.block - 1) / o_.block;
      const int64_t kv = sinkhorn_block_base(seq.offsets[b], o_.block, b) * ld;
      // [K^ | V^] (nb x fw, row-major, ld H fw) = Pi^T [K~ | V~]: column-major [K^|V^]^T = [K~|V~]^T Pi.
      CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_.blas, CUBLAS_OP_N, CUBLAS_OP_T, fw_, nb, nb, &one, p.kvt + kv,
                                             static_cast<int>(ld), fw_, p.pi + static_cast<int64_t>(b) * H * nn, N,
                                             nn, &zero, p.kvh + kv, static_cast<int>(ld), fw_, H));
    }
  }

  // The weights' gradients += the factor table's sums over its rows (rows of unused slots are zero).
  void reduce_weight_grads(const Params& p, int64_t blocks) const {
    const float one = 1.0f;
    const int d = c_.dk, H = c_.heads, mb = o_.max_blocks, k = static_cast<int>(blocks);
    if (!o_.mlp) {
      // dW (d x mb, row-major) += S^T dR over every (block, head) row: column-major dW^T += dR^T S.
      CUBLAS_CHECK(cublasSgemm(ctx_.blas, CUBLAS_OP_N, CUBLAS_OP_T, mb, d, k * H, &one, p.slots + d, sw_, p.slots,
                               sw_, &one, param_grad(0), mb));
      return;
    }
    const int ld = H * sw_;
    // Head h's rows are h, h + H, ...: row stride H sw, head stride sw.
    // dW1_h (d x d) += S^T dZ1: column-major dW1_h^T += dZ1^T S.
    CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_.blas, CUBLAS_OP_N, CUBLAS_OP_T, d, d, k, &one, p.slots + 2 * d, ld,
                                           sw_, p.slots, ld, sw_, &one, param_grad(0), d,
                                           static_cast<int64_t>(d) * d, H));
    // dW2_h (d x mb) += A1^T dZ2: column-major dW2_h^T += dZ2^T A1.
    CUBLAS_CHECK(cublasSgemmStridedBatched(ctx_.blas, CUBLAS_OP_N, CUBLAS_OP_T, mb, d, k, &one, p.slots + 3 * d, ld,
                                           sw_, p.slots + d, ld, sw_, &one, param_grad(2),
                                           mb, static_cast<int64_t>(d) * mb, H));
    column_sums<<<grid_for(static_cast<long long>(H) * d, kThreads), kThreads, 0, ctx_.stream>>>(
        p.slots, blocks, H, sw_, 2 * d, d, param_grad(1));
    CUDA_CHECK_LAUNCH();
    column_sums<<<grid_for(static_cast<long long>(H) * mb, kThreads), kThreads, 0, ctx_.stream>>>(
        p.slots, blocks, H, sw_, 3 * d, mb, param_grad(3));
    CUDA_CHECK_LAUNCH();
  }

  AttnConfig c_;
  Context ctx_;
  SinkhornOptions o_;
  int fw_ = 0, sw_ = 0;
};

std::unique_ptr<Attention<float>> make_sinkhorn(const AttnConfig& cfg, const Context& ctx) {
  return std::make_unique<SinkhornGpu>(cfg, ctx);
}

[[maybe_unused]] const bool registered = register_attention("sinkhorn", make_sinkhorn);

}  // namespace

}  // namespace lra::cuda
