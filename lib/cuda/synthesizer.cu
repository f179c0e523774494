// Synthesizer on the GPU: the same modes (random, factorized, dense), dot_product on and off, causal mode,
// masks, learned weights, dropout stream and saved state as lib/attn/synthesizer.cpp, with cuBLAS for every
// product and small element-wise kernels for the rest.
//
// Per example b (n rows from r0) and head h, tau = dk^-1/2, mu = key mask:
//   random:     Syn = R[h, :n, :n]                        R: heads x max_len x max_len ("random")
//   factorized: Syn = A[h, :n] B[h, :n]^T                 A, B: heads x max_len x k
//   dense:      Syn_i = W2[h, :n] relu(W1[h] q_i + b1[h]) + b2[h, :n]
//   forward:  S = Syn (+ tau Q K^T with dot_product) (-inf where mu = 0, or j > i when causal),
//             LSE_i = log sum_j exp S_ij,  P = exp(S - LSE),  P' = P z / (1-p) (attention dropout),  O = P' V
//   backward: dV = P'^T dO,  dP = (dO V^T) z / (1-p),  D_i = dO_i . O_i,  dS = P (dP - D),
//             with dot_product: dQ = tau dS K,  dK = tau dS^T Q (otherwise dK = 0 and dQ only from dense)
//             random:     dR[h, :n, :n] += dS
//             factorized: dA[h, :n] += dS B[h, :n],  dB[h, :n] += dS^T A[h, :n]
//             dense:      H = Q W1[h]^T + b1[h],  dW2[h, :n] += dS^T relu(H),  db2[h, :n] += colsum(dS),
//                         dH = (dS W2[h, :n]) [H > 0],  dW1[h] += dH^T Q,  db1[h] += colsum(dH),  dQ += dH W1[h]
// A row that sees no key outputs 0 and gets LSE = +inf (so P = 0 in the backward). z_ij keeps element
// (row r, head h, key j) when the 24 high bits of Philox word (r H + h) L_pad + j of (seed, stream) are
// >= dropout_threshold(p): the CPU's (and softmax's) mask (lib/attn/row_softmax.h).
//
// The n x n logits are the method's own cost. They are materialised in query chunks: example after example
// (a host loop; lengths differ), chunk after chunk of up to Tq query rows, all heads at once, a heads x tq x nk
// logit block (nk = n, or when causal the keys up to the chunk's last query, as the CPU's tiles). Tq is
// max_len when heads x max_len^2 floats fit kLogitElems (128 MiB), else kLogitElems / (heads max_len)
// (at least 1), so a long sequence costs two fixed blocks of scratch, not B x heads x L^2. Per chunk:
//   logits:   S_h = tau Q_h K_h^T (strided-batched over heads), then
//             random: S += R[h, i0.., :nk] (add_matrix);  factorized: S_h += A_h B_h^T (batched GEMM);
//             dense: H_h = Q_h W1_h^T (batched GEMM), H += b1 and relu(H) (dense_hidden),
//                    S_h += relu(H_h) W2_h^T (batched GEMM), S += b2 (add_matrix)
//   forward:  chunk_softmax (one warp per (query, head): LSE, P' in place of S);  O_h = P'_h V_h (batched)
//   backward: logits again;  dP_h = dO_h V_h^T;  chunk_softmax_grad (one warp per (query, head): D, dS in
//             place of dP, P' in place of S);  dV_h += P'_h^T dO_h;  with dot_product dQ_h = tau dS_h K_h and
//             dK_h += tau dS_h^T Q_h;  random: dR += dS (add_into);  factorized: dA_h += dS_h B_h,
//             dB_h += dS_h^T A_h;  dense: dW2_h += dS_h^T relu(H_h), db2 += colsum(dS) (colsum_add),
//             dH_h = dS_h W2_h, masked by H > 0 with db1 += colsum(dH) (dense_grad_hidden), dW1_h += dH_h^T Q_h,
//             dQ_h (+)= dH_h W1_h
//   dK and dV are zeroed first (cudaMemset2DAsync on their columns) and accumulated chunk after chunk, as
//   is dQ when nothing writes it (no dot product, not dense).
// The learned weights' gradients accumulate (+=) in stream order, example after example, chunk after chunk,
// each element of a kernel's output owned by one thread: no atomics, the same bits every run.
// Kernels: 256 threads, 1-D grid-stride loops (no grid.y/z, no shared memory).
// Saved: LSE per (row, head), as on the CPU. Scratch: S and dP (heads x Tq x max_len floats each), and in
// dense mode H and relu(H) / dH (heads x Tq x dk each).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/synthesizer.h"
#include "core/arena.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"
#include "cuda/row_softmax.cuh"
#include "cuda/strided_gemm.h"
#include "ops/math.h"

namespace lra::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kLogitElems = int64_t{1} << 25;  // floats of one logit block when max_len must be chunked

using Mode = SynthesizerMode;

// One query chunk of one example: queries i0 .. i0 + tq - 1 (rows r0 + i0 ..) over keys 0 .. nk - 1.
struct Chunk {
  int64_t r0 = 0;
  int i0 = 0;
  int tq = 0;
  int nk = 0;
};

// for (e = this thread's first index; e < total; e += threads of the grid)
#define LRA_GRID_STRIDE(e, total)                                                            \
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < (total); \
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)

// s (heads x tq x nk) = s (accumulate) or 0, plus src[h hs + i rs + j].
__global__ void add_matrix(float* __restrict__ s, const float* __restrict__ src, int64_t hs, int64_t rs, int heads,
                           int tq, int nk, bool accumulate) {
  const int64_t per_head = static_cast<int64_t>(tq) * nk;
  LRA_GRID_STRIDE(e, per_head * heads) {
    const int64_t h = e / per_head, rem = e % per_head;
    const float v = src[h * hs + (rem / nk) * rs + rem % nk];
    s[e] = accumulate ? s[e] + v : v;
  }
}

// dst[h hs + i rs + j] += src (heads x tq x nk): each element of dst once.
__global__ void add_into(float* __restrict__ dst, const float* __restrict__ src, int64_t hs, int64_t rs, int heads,
                         int tq, int nk) {
  const int64_t per_head = static_cast<int64_t>(tq) * nk;
  LRA_GRID_STRIDE(e, per_head * heads) {
    const int64_t h = e / per_head, rem = e % per_head;
    dst[h * hs + (rem / nk) * rs + rem % nk] += src[e];
  }
}

// dst[h hs + j] += sum over i in order of src[h][i][j] (src heads x tq x nk), one thread per (h, j).
__global__ void colsum_add(float* __restrict__ dst, const float* __restrict__ src, int64_t hs, int heads, int tq,
                           int nk) {
  LRA_GRID_STRIDE(e, static_cast<int64_t>(heads) * nk) {
    const int64_t h = e / nk, j = e % nk;
    const float* col = src + h * tq * nk + j;
    float acc = 0.0f;
    for (int i = 0; i < tq; ++i) acc += col[static_cast<int64_t>(i) * nk];
    dst[h * hs + j] += acc;
  }
}

// Dense mode, hp and hr heads x tq x d: hp += b1[h], hr = relu(hp).
__global__ void dense_hidden(float* __restrict__ hp, float* __restrict__ hr, const float* __restrict__ b1, int heads,
                             int tq, int d) {
  const int64_t per_head = static_cast<int64_t>(tq) * d;
  LRA_GRID_STRIDE(e, per_head * heads) {
    const int64_t h = e / per_head;
    const float x = hp[e] + b1[h * d + e % d];
    hp[e] = x;
    hr[e] = relu(x);
  }
}

// Dense mode: dh <- dh [hp > 0] and db1[h][c] += sum over i in order of it, one thread per (h, c).
__global__ void dense_grad_hidden(float* __restrict__ dh, const float* __restrict__ hp, float* __restrict__ db1,
                                  int heads, int tq, int d) {
  LRA_GRID_STRIDE(e, static_cast<int64_t>(heads) * d) {
    const int64_t h = e / d, c = e % d;
    float acc = 0.0f;
    for (int i = 0; i < tq; ++i) {
      const int64_t at = (h * tq + i) * d + c;
      const float g = hp[at] > 0.0f ? dh[at] : 0.0f;
      dh[at] = g;
      acc += g;
    }
    db1[e] += acc;
  }
}

#undef LRA_GRID_STRIDE

// Whether query q (position in its example) sees key j of the example whose rows start at r0.
__device__ __forceinline__ bool visible(const uint8_t* mask, int64_t r0, int q, int j, bool causal) {
  return (mask == nullptr || mask[r0 + j] != 0) && !(causal && j > q);
}

// One warp per (head h, query i) of the chunk, its nk logits at s + (h tq + i) nk: S <- P', lse = LSE
// (+inf for a query without a visible key: output 0, P = 0 in the backward).
__global__ void chunk_softmax(float* __restrict__ s, float* __restrict__ lse, const uint8_t* __restrict__ mask,
                              Chunk ch, int heads, bool causal, AttnDropout d, int L_pad) {
  const int64_t items = static_cast<int64_t>(heads) * ch.tq;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t it = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; it < items; it += warps) {
    const int h = static_cast<int>(it / ch.tq);
    const int q = ch.i0 + static_cast<int>(it % ch.tq);
    const int64_t r = ch.r0 + q;
    const auto seen = [&](int j) { return visible(mask, ch.r0, q, j, causal); };
    const float l = warp_softmax_row(s + it * ch.nk, ch.nk, seen, d, dropout_element(d.rows, r, h, heads, L_pad));
    if ((threadIdx.x & 31) == 0) lse[r * heads + h] = l;
  }
}

// One warp per (head h, query i) of the chunk: D = dO . O of its row, then per key P = exp(S - LSE) (0 for
// hidden keys), dP <- dS = P (dP z - D) and S <- P' = P z.
__global__ void chunk_softmax_grad(float* __restrict__ s, float* __restrict__ dp, const float* __restrict__ lse,
                                   const uint8_t* __restrict__ mask, const float* __restrict__ out,
                                   const float* __restrict__ dout, int64_t ld_out, int dv, Chunk ch, int heads,
                                   bool causal, AttnDropout d, int L_pad) {
  const int64_t items = static_cast<int64_t>(heads) * ch.tq;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t it = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; it < items; it += warps) {
    const int h = static_cast<int>(it / ch.tq);
    const int q = ch.i0 + static_cast<int>(it % ch.tq);
    const int64_t r = ch.r0 + q;
    const int64_t col = r * ld_out + static_cast<int64_t>(h) * dv;
    const float di = warp_dot(dout + col, out + col, dv);
    const auto seen = [&](int j) { return visible(mask, ch.r0, q, j, causal); };
    warp_softmax_row_grad(s + it * ch.nk, dp + it * ch.nk, ch.nk, lse[r * heads + h], di, seen, d,
                          dropout_element(d.rows, r, h, heads, L_pad));
  }
}

class SynthesizerGpu final : public Attention<float> {
 public:
  SynthesizerGpu(const AttnConfig& c, const Context& ctx, int query_chunk)
      : SynthesizerGpu(c, ctx, query_chunk, SynthesizerOptions::parse(c)) {}
  SynthesizerGpu(const AttnConfig& c, const Context& ctx, int query_chunk, const SynthesizerOptions& o)
      : c_(c),
        ctx_(ctx),
        o_(o),
        tau_(1.0f / std::sqrt(static_cast<float>(c.dk))) {
    LRA_CHECK(query_chunk >= 0, "synthesizer on the GPU: the query chunk must be positive (or 0: automatic), got {}",
              query_chunk);
    const int64_t L = c.max_len, H = c.heads;
    const int64_t fit = std::max<int64_t>(1, kLogitElems / (H * L));
    tq_ = static_cast<int>(std::min<int64_t>(query_chunk > 0 ? query_chunk : fit, L));
    LRA_CHECK(H * std::max(c.dk, c.dv) <= INT_MAX,
              "synthesizer on the GPU: heads x head size = {} must fit cuBLAS's 32-bit sizes; use fewer heads or "
              "--device cpu",
              H * std::max(c.dk, c.dv));
  }

  size_t saved_bytes(int, int64_t rows) const override {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads, Arena::kAlign);
  }
  size_t scratch_bytes(int, int64_t) const override {
    size_t bytes = 0;
    carve(nullptr, &bytes);
    return bytes;
  }

  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch, const AttnStep& step) override {
    prepare(seq, io);
    if (seq.rows() == 0) return;
    size_t bytes = 0;
    const Work w = carve(scratch, &bytes);
    float* lse = static_cast<float*>(saved);
    const AttnDropout drop = attn_dropout(c_, step);
    const uint8_t* mask = seq.key_mask != nullptr ? seq.dev_key_mask : nullptr;
    const int H = c_.heads, dv = c_.dv;
    for_chunks(seq, [&](const Chunk& ch) {
      logits(io, ch, w);
      chunk_softmax<<<grid_for(static_cast<int64_t>(H) * ch.tq * 32, kThreads), kThreads, 0, ctx_.stream>>>(
          w.s, lse, mask, ch, H, o_.causal, drop, seq.L_pad);
      CUDA_CHECK_LAUNCH();
      // O_h (tq x dv) = P'_h V_h
      gemm(ctx_, dv, ch.tq, ch.nk, 1.0f, GemmOp{io.v + ch.r0 * io.ld_in, io.ld_in, dv, CUBLAS_OP_N},
           GemmOp{w.s, ch.nk, block(ch), CUBLAS_OP_N}, 0.0f, io.out + (ch.r0 + ch.i0) * io.ld_out, io.ld_out, dv, H);
    });
  }

  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep& step) override {
    prepare(seq, io);
    const int64_t rows = seq.rows();
    if (rows == 0) return;
    size_t bytes = 0;
    const Work w = carve(scratch, &bytes);
    const float* lse = static_cast<const float*>(saved);
    const AttnDropout drop = attn_dropout(c_, step);
    const uint8_t* mask = seq.key_mask != nullptr ? seq.dev_key_mask : nullptr;
    const int H = c_.heads, d = c_.dk, dv = c_.dv, L = c_.max_len;
    zero_columns(g.dk, io.ld_in, static_cast<int64_t>(H) * d, rows);
    zero_columns(g.dv, io.ld_in, static_cast<int64_t>(H) * dv, rows);
    if (!o_.dot_product && o_.mode != Mode::Dense) zero_columns(g.dq, io.ld_in, static_cast<int64_t>(H) * d, rows);
    for_chunks(seq, [&](const Chunk& ch) {
      logits(io, ch, w);
      const int64_t sS = block(ch);
      const float* q = io.q + (ch.r0 + ch.i0) * io.ld_in;
      const float* dout = g.dout + (ch.r0 + ch.i0) * io.ld_out;
      float* dq = g.dq + (ch.r0 + ch.i0) * io.ld_in;
      // dP_h (tq x nk) = dO_h V_h^T
      gemm(ctx_, ch.nk, ch.tq, dv, 1.0f, GemmOp{io.v + ch.r0 * io.ld_in, io.ld_in, dv, CUBLAS_OP_T},
           GemmOp{dout, io.ld_out, dv, CUBLAS_OP_N}, 0.0f, w.dp, ch.nk, sS, H);
      chunk_softmax_grad<<<grid_for(static_cast<int64_t>(H) * ch.tq * 32, kThreads), kThreads, 0, ctx_.stream>>>(
          w.s, w.dp, lse, mask, io.out, g.dout, io.ld_out, dv, ch, H, o_.causal, drop, seq.L_pad);
      CUDA_CHECK_LAUNCH();
      const GemmOp dS{w.dp, ch.nk, sS, CUBLAS_OP_N}, dS_T{w.dp, ch.nk, sS, CUBLAS_OP_T};
      // dV_h (nk x dv) += P'_h^T dO_h
      gemm(ctx_, dv, ch.nk, ch.tq, 1.0f, GemmOp{dout, io.ld_out, dv, CUBLAS_OP_N}, GemmOp{w.s, ch.nk, sS, CUBLAS_OP_T},
           1.0f, g.dv + ch.r0 * io.ld_in, io.ld_in, dv, H);
      if (o_.dot_product) {
        // dQ_h (tq x dk) = tau dS_h K_h;  dK_h (nk x dk) += tau dS_h^T Q_h
        gemm(ctx_, d, ch.tq, ch.nk, tau_, GemmOp{io.k + ch.r0 * io.ld_in, io.ld_in, d, CUBLAS_OP_N}, dS, 0.0f, dq,
             io.ld_in, d, H);
        gemm(ctx_, d, ch.nk, ch.tq, tau_, GemmOp{q, io.ld_in, d, CUBLAS_OP_N}, dS_T, 1.0f,
             g.dk + ch.r0 * io.ld_in, io.ld_in, d, H);
      }
      switch (o_.mode) {
        case Mode::Random: {
          const int64_t per = static_cast<int64_t>(H) * sS;
          add_into<<<grid_for(per, kThreads), kThreads, 0, ctx_.stream>>>(
              this->param_grad(0) + static_cast<int64_t>(ch.i0) * L, w.dp, static_cast<int64_t>(L) * L, L, H, ch.tq,
              ch.nk);
          CUDA_CHECK_LAUNCH();
          break;
        }
        case Mode::Factorized: {
          const int64_t sW = static_cast<int64_t>(L) * o_.k, a0 = static_cast<int64_t>(ch.i0) * o_.k;
          // dA_h (tq x k) += dS_h B_h;  dB_h (nk x k) += dS_h^T A_h
          gemm(ctx_, o_.k, ch.tq, ch.nk, 1.0f, GemmOp{this->param(1), o_.k, sW, CUBLAS_OP_N}, dS, 1.0f,
               this->param_grad(0) + a0, o_.k, sW, H);
          gemm(ctx_, o_.k, ch.nk, ch.tq, 1.0f, GemmOp{this->param(0) + a0, o_.k, sW, CUBLAS_OP_N}, dS_T, 1.0f,
               this->param_grad(1), o_.k, sW, H);
          break;
        }
        case Mode::Dense:
          dense_backward(ch, q, dq, io.ld_in, dS, dS_T, w);
          break;
      }
    });
  }

 private:
  struct Work {
    float* s;   // heads x Tq x max_len: logits, then P'
    float* dp;  // heads x Tq x max_len: dP, then dS
    float* h;   // heads x Tq x dk (dense): H
    float* hr;  // heads x Tq x dk (dense): relu(H), then dH
  };

  Work carve(void* base, size_t* bytes) const {
    ScratchCarver sc(base);
    const size_t ht = static_cast<size_t>(c_.heads) * tq_;
    Work w{};
    w.s = sc.take<float>(ht * c_.max_len);
    w.dp = sc.take<float>(ht * c_.max_len);
    if (o_.mode == Mode::Dense) {
      w.h = sc.take<float>(ht * c_.dk);
      w.hr = sc.take<float>(ht * c_.dk);
    }
    *bytes = sc.used();
    return w;
  }

  // Elements of one head's logit block.
  static int64_t block(const Chunk& ch) { return static_cast<int64_t>(ch.tq) * ch.nk; }

  void prepare(const SeqBatch& seq, const AttnIO<float>& io) const {
    check_device_batch(seq, c_.max_len, "synthesizer", /*device_offsets=*/false);  // it reads the host's
    check_gemm_strides(io, c_, "synthesizer");
  }

  // Calls f(chunk) for the query chunks of every example, in order (host offsets).
  template <class F>
  void for_chunks(const SeqBatch& seq, F&& f) const {
    for (int b = 0; b < seq.B; ++b) {
      const int n = seq.length(b);
      for (int i0 = 0; i0 < n; i0 += tq_) {
        Chunk ch;
        ch.r0 = seq.offsets[b];
        ch.i0 = i0;
        ch.tq = std::min(tq_, n - i0);
        ch.nk = o_.causal ? std::min(n, i0 + ch.tq) : n;
        f(ch);
      }
    }
  }

  // The chunk's logits into w.s (heads x tq x nk), hidden keys not yet excluded (the softmax kernels do).
  // Dense mode leaves H and relu(H) in w.h and w.hr.
  void logits(const AttnIO<float>& io, const Chunk& ch, const Work& w) const {
    const int H = c_.heads, d = c_.dk, L = c_.max_len;
    const int64_t sS = block(ch);
    const GemmOp Qc{io.q + (ch.r0 + ch.i0) * io.ld_in, io.ld_in, d, CUBLAS_OP_N};
    if (o_.dot_product)  // S_h (tq x nk) = tau Q_h K_h^T
      gemm(ctx_, ch.nk, ch.tq, d, tau_, GemmOp{io.k + ch.r0 * io.ld_in, io.ld_in, d, CUBLAS_OP_T}, Qc, 0.0f, w.s,
           ch.nk, sS, H);
    const float beta = o_.dot_product ? 1.0f : 0.0f;
    const int64_t per = static_cast<int64_t>(H) * sS;
    switch (o_.mode) {
      case Mode::Random:
        add_matrix<<<grid_for(per, kThreads), kThreads, 0, ctx_.stream>>>(
            w.s, this->param(0) + static_cast<int64_t>(ch.i0) * L, static_cast<int64_t>(L) * L, L, H, ch.tq, ch.nk,
            o_.dot_product);
        CUDA_CHECK_LAUNCH();
        break;
      case Mode::Factorized: {
        // S_h += A_h[i0..] B_h[:nk]^T
        const int64_t sW = static_cast<int64_t>(L) * o_.k;
        gemm(ctx_, ch.nk, ch.tq, o_.k, 1.0f, GemmOp{this->param(1), o_.k, sW, CUBLAS_OP_T},
             GemmOp{this->param(0) + static_cast<int64_t>(ch.i0) * o_.k, o_.k, sW, CUBLAS_OP_N}, beta, w.s, ch.nk, sS, H);
        break;
      }
      case Mode::Dense: {
        const int64_t sH = static_cast<int64_t>(ch.tq) * d;
        // H_h (tq x d) = Q_h W1_h^T, then + b1 and relu
        gemm(ctx_, d, ch.tq, d, 1.0f, GemmOp{this->param(0), d, static_cast<int64_t>(d) * d, CUBLAS_OP_T}, Qc, 0.0f,
             w.h, d, sH, H);
        dense_hidden<<<grid_for(static_cast<int64_t>(H) * sH, kThreads), kThreads, 0, ctx_.stream>>>(
            w.h, w.hr, this->param(1), H, ch.tq, d);
        CUDA_CHECK_LAUNCH();
        // S_h += relu(H_h) W2_h[:nk]^T, then + b2[h, :nk]
        gemm(ctx_, ch.nk, ch.tq, d, 1.0f, GemmOp{this->param(2), d, static_cast<int64_t>(L) * d, CUBLAS_OP_T},
             GemmOp{w.hr, d, sH, CUBLAS_OP_N}, beta, w.s, ch.nk, sS, H);
        add_matrix<<<grid_for(per, kThreads), kThreads, 0, ctx_.stream>>>(w.s, this->param(3), L, 0, H, ch.tq, ch.nk,
                                                                          true);
        CUDA_CHECK_LAUNCH();
        break;
      }
    }
  }

  // The dense synthesiser's part of a chunk's backward, dS in w.dp and H, relu(H) in w.h, w.hr; q and dq are
  // the chunk's first query row (row stride ld).
  void dense_backward(const Chunk& ch, const float* q, float* dq, int64_t ld, const GemmOp& dS, const GemmOp& dS_T,
                      const Work& w) const {
    const int H = c_.heads, d = c_.dk, L = c_.max_len;
    const int64_t sH = static_cast<int64_t>(ch.tq) * d, sW2 = static_cast<int64_t>(L) * d,
                  sW1 = static_cast<int64_t>(d) * d;
    // dW2_h[:nk] (nk x d) += dS_h^T relu(H_h);  db2[h, :nk] += colsum(dS_h)
    gemm(ctx_, d, ch.nk, ch.tq, 1.0f, GemmOp{w.hr, d, sH, CUBLAS_OP_N}, dS_T, 1.0f, this->param_grad(2), d, sW2, H);
    colsum_add<<<grid_for(static_cast<int64_t>(H) * ch.nk, kThreads), kThreads, 0, ctx_.stream>>>(
        this->param_grad(3), w.dp, L, H, ch.tq, ch.nk);
    CUDA_CHECK_LAUNCH();
    // dH_h (tq x d) = (dS_h W2_h[:nk]) [H > 0] into w.hr;  db1 += colsum(dH)
    gemm(ctx_, d, ch.tq, ch.nk, 1.0f, GemmOp{this->param(2), d, sW2, CUBLAS_OP_N}, dS, 0.0f, w.hr, d, sH, H);
    dense_grad_hidden<<<grid_for(static_cast<int64_t>(H) * d, kThreads), kThreads, 0, ctx_.stream>>>(
        w.hr, w.h, this->param_grad(1), H, ch.tq, d);
    CUDA_CHECK_LAUNCH();
    // dW1_h (d x d) += dH_h^T Q_h;  dQ_h (+)= dH_h W1_h
    gemm(ctx_, d, d, ch.tq, 1.0f, GemmOp{q, ld, d, CUBLAS_OP_N}, GemmOp{w.hr, d, sH, CUBLAS_OP_T}, 1.0f,
         this->param_grad(0), d, sW1, H);
    gemm(ctx_, d, ch.tq, d, 1.0f, GemmOp{this->param(0), d, sW1, CUBLAS_OP_N}, GemmOp{w.hr, d, sH, CUBLAS_OP_N},
         o_.dot_product ? 1.0f : 0.0f, dq, ld, d, H);
  }

  // Zeroes columns 0 .. width-1 of `rows` rows of p (row stride ld floats), on the stream.
  void zero_columns(float* p, int64_t ld, int64_t width, int64_t rows) const {
    CUDA_CHECK(cudaMemset2DAsync(p, sizeof(float) * static_cast<size_t>(ld), 0, sizeof(float) * static_cast<size_t>(width),
                                 static_cast<size_t>(rows), ctx_.stream));
  }

  AttnConfig c_;
  Context ctx_;
  SynthesizerOptions o_;
  float tau_;
  int tq_ = 1;  // Tq: the most query rows of one logit block
};

}  // namespace

std::unique_ptr<Attention<float>> make_synthesizer_attention(const AttnConfig& cfg, const Context& ctx,
                                                             int query_chunk) {
  return declare_params(find_attention("synthesizer"), cfg,
                        std::unique_ptr<Attention<float>>(std::make_unique<SynthesizerGpu>(cfg, ctx, query_chunk)));
}

namespace {
[[maybe_unused]] const bool registered = register_attention(
    "synthesizer", [](const AttnConfig& cfg, const Context& ctx) { return make_synthesizer_attention(cfg, ctx); });
}  // namespace

}  // namespace lra::cuda
