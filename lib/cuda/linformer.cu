// Linformer on the GPU: the same maths, masks, learned projection, dropout stream and saved state as
// lib/attn/linformer.cpp, with cuBLAS for every product and three small kernels for the rest.
//
// Per example b (n rows from r0) and head h, tau = dk^-1/2, mu = key mask, E the learned "proj"
// (max_len x k), E_n = diag(mu) E[:n] (n x k):
//   forward:  K' = E_n^T K, V' = E_n^T V (k x dk, k x dv),  S = tau Q K'^T (n x k),
//             LSE_i = log sum_r exp S_ir,  P = exp(S - LSE),  P' = P z / (1-p) (attention dropout),  O = P' V'
//   backward: dV' = P'^T dO,  dP = (dO V'^T) z / (1-p),  D_i = dO_i . O_i,  dS = P (dP - D),
//             dQ = tau dS K',  dK' = tau dS^T Q,  dK = E_n dK',  dV = E_n dV',
//             dE[:n] += diag(mu) (K dK'^T + V dV'^T), summed over examples and heads.
// z_ir keeps element (row r, head h, projected key i) when the 24 high bits of Philox word (r H + h) k + i
// of (seed, stream) are >= dropout_threshold(p): the CPU's mask (lib/attn/row_softmax.h).
//
// Heads share E, so per example the projections of all heads are one product: with K_b the n x (H dk)
// block of the example's key rows, K'_b = E_n^T K_b is k x (H dk) and head h's K' is its columns
// h dk .. h dk + dk - 1 (V' likewise). Per example (a loop on the host over examples of different lengths):
//   forward:  K'_b, V'_b (one GEMM each);  S_h = tau Q_h K'_h^T (strided-batched over heads)
//             -> row_softmax over every (row, head) of the batch ->  O_h = P'_h V'_h (batched over heads)
//   backward: S_h again;  dP_h = dO_h V'_h^T  -> softmax_grad over every (row, head)  ->
//             dV'_h = P'_h^T dO_h,  dK'_h = tau dS_h^T Q_h,  dQ_h = tau dS_h K'_h (batched over heads),
//             dK_b = E_n dK'_b,  dV_b = E_n dV'_b,  G_b = K_b dK'_b^T + V_b dV'_b^T (one GEMM each)
//             -> projection_grad: dE[i] += sum over b in order of mu G_b[i], one thread per element of dE.
// Every element of dE is summed by one thread in a fixed order, and cuBLAS is deterministic on one
// stream: the same bits every run. Kernels (256 threads, grid-stride, no shared memory):
//   masked_projection  E_n of every row (only with a key mask; without one E_n is E's first n rows)
//   row_softmax        one warp per (row, head): LSE, P' in place of S
//   softmax_grad       one warp per (row, head): D, then dS in place of dP and P' in place of S
//   projection_grad    one thread per element of dE[:longest]
// Saved (as on the CPU): LSE per (row, head), then K'_b and V'_b per example (k x H dk, k x H dv).
// Scratch: E_n (rows x k), S and dP (rows x heads x k each, laid out [row][head][k]), G (rows x k) and one
// example's dK'_b, dV'_b (reused example after example: the stream orders them).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "attn/linformer.h"
#include "core/arena.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"
#include "cuda/row_softmax.cuh"
#include "cuda/strided_gemm.h"

namespace lra::cuda {

namespace {

constexpr int kThreads = 256;

// en (rows x k): row r at position p of its example is E[p] where mask[r] = 1, zeros where it is 0.
__global__ void masked_projection(float* __restrict__ en, const float* __restrict__ E,
                                  const int32_t* __restrict__ offsets, const uint8_t* __restrict__ mask, int B,
                                  int64_t rows, int k) {
  const int64_t total = rows * k;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / k;
    const int j = static_cast<int>(e % k);
    const int64_t p = r - offsets[example_of(offsets, B, r)];
    en[e] = mask[r] != 0 ? E[p * k + j] : 0.0f;
  }
}

// One warp per item it = r H + h (row r, head h), its k scores at s + it k: S <- P' and lse[it] = LSE.
__global__ void row_softmax(float* __restrict__ s, float* __restrict__ lse, int64_t items, int heads, int k,
                            AttnDropout d) {
  const auto every = [](int) { return true; };
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t it = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; it < items; it += warps) {
    const float l =
        warp_softmax_row(s + it * k, k, every, d, dropout_element(d.rows, it / heads, static_cast<int>(it % heads), heads, k));
    if ((threadIdx.x & 31) == 0) lse[it] = l;
  }
}

// One warp per item it = r H + h: D = dO . O of the row and head, then per projected key
// P = exp(S - LSE), dP <- dS = P (dP z - D) and S <- P' = P z.
__global__ void softmax_grad(float* __restrict__ s, float* __restrict__ dp, const float* __restrict__ lse,
                             const float* __restrict__ out, const float* __restrict__ dout, int64_t ld_out, int heads,
                             int dv, int64_t items, int k, AttnDropout d) {
  const auto every = [](int) { return true; };
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t it = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; it < items; it += warps) {
    const int64_t col = (it / heads) * ld_out + static_cast<int64_t>(it % heads) * dv;  // row r, head h
    const float di = warp_dot(dout + col, out + col, dv);
    warp_softmax_row_grad(s + it * k, dp + it * k, k, lse[it], di, every, d,
                          dropout_element(d.rows, it / heads, static_cast<int>(it % heads), heads, k));
  }
}

// dE[i][j] += sum over examples b in order with i < n_b and mu[r0_b + i] = 1 of G[r0_b + i][j], for i < longest.
__global__ void projection_grad(float* __restrict__ dE, const float* __restrict__ G, const int32_t* __restrict__ offsets,
                                const uint8_t* __restrict__ mask, int B, int longest, int k) {
  const int64_t total = static_cast<int64_t>(longest) * k;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / k;
    const int64_t j = e % k;
    float acc = 0.0f;
    for (int b = 0; b < B; ++b) {
      const int64_t r0 = offsets[b];
      if (i >= offsets[b + 1] - r0) continue;
      if (mask != nullptr && mask[r0 + i] == 0) continue;
      acc += G[(r0 + i) * k + j];
    }
    dE[e] += acc;
  }
}

class LinformerGpu final : public Attention<float> {
 public:
  LinformerGpu(const AttnConfig& c, const Context& ctx)
      : c_(c), ctx_(ctx), k_(LinformerOptions::parse(c).k) {
    const int64_t hk = static_cast<int64_t>(c.heads) * k_;
    const int64_t hkv = static_cast<int64_t>(c.heads) * std::max(c.dk, c.dv);
    LRA_CHECK(hk <= INT_MAX && hkv <= INT_MAX,
              "linformer on the GPU: heads x k = {} and heads x head size = {} must fit cuBLAS's 32-bit leading "
              "dimensions; use a smaller k or fewer heads, or --device cpu",
              hk, hkv);
    tau_ = 1.0f / std::sqrt(static_cast<float>(c.dk));
  }


  size_t saved_bytes(int B, int64_t rows) const override {
    return lse_bytes(rows) + sizeof(float) * static_cast<size_t>(B) * kv_elems();
  }
  size_t scratch_bytes(int, int64_t rows) const override {
    size_t bytes = 0;
    carve(nullptr, rows, &bytes);
    return bytes;
  }

  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch, const AttnStep& step) override {
    prepare(seq, io);
    const int64_t rows = seq.rows();
    if (rows == 0) return;
    size_t bytes = 0;
    const Work w = carve(scratch, rows, &bytes);
    float* lse = static_cast<float*>(saved);
    float* kv = kv_base(saved, rows);
    const float* En = projection(seq, w);
    const int H = c_.heads, dk = c_.dk, dv = c_.dv;
    const int64_t HK = static_cast<int64_t>(H) * dk, HV = static_cast<int64_t>(H) * dv, Hk = static_cast<int64_t>(H) * k_;
    for (int b = 0; b < seq.B; ++b) {
      const int64_t r0 = seq.offsets[b];
      const int n = seq.length(b);
      if (n == 0) continue;
      float* kp = kv + static_cast<int64_t>(b) * kv_elems();
      float* vp = kp + static_cast<int64_t>(k_) * HK;
      const GemmOp En_T{en_rows(seq, En, r0), k_, 0, CUBLAS_OP_T};
      // K'_b (k x H dk) = E_n^T K_b;  V'_b = E_n^T V_b
      gemm(ctx_, HK, k_, n, 1.0f, GemmOp{io.k + r0 * io.ld_in, io.ld_in, 0, CUBLAS_OP_N}, En_T, 0.0f, kp, HK, 0);
      gemm(ctx_, HV, k_, n, 1.0f, GemmOp{io.v + r0 * io.ld_in, io.ld_in, 0, CUBLAS_OP_N}, En_T, 0.0f, vp, HV, 0);
      scores(io, r0, n, kp, w.s);
    }
    const int64_t items = rows * H;
    row_softmax<<<grid_for(items * 32, kThreads), kThreads, 0, ctx_.stream>>>(w.s, lse, items, c_.heads, k_, attn_dropout(c_, step));
    CUDA_CHECK_LAUNCH();
    for (int b = 0; b < seq.B; ++b) {
      const int64_t r0 = seq.offsets[b];
      const int n = seq.length(b);
      if (n == 0) continue;
      const float* vp = kv + static_cast<int64_t>(b) * kv_elems() + static_cast<int64_t>(k_) * HK;
      // O_h (n x dv) = P'_h V'_h
      gemm(ctx_, dv, n, k_, 1.0f, GemmOp{vp, HV, dv, CUBLAS_OP_N}, GemmOp{w.s + r0 * Hk, Hk, k_, CUBLAS_OP_N}, 0.0f,
           io.out + r0 * io.ld_out, io.ld_out, dv, H);
    }
  }

  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep& step) override {
    prepare(seq, io);
    const int64_t rows = seq.rows();
    if (rows == 0) return;
    size_t bytes = 0;
    const Work w = carve(scratch, rows, &bytes);
    const float* lse = static_cast<const float*>(saved);
    const float* kv = kv_base(const_cast<void*>(saved), rows);
    const float* En = projection(seq, w);
    const int H = c_.heads, dk = c_.dk, dv = c_.dv;
    const int64_t HK = static_cast<int64_t>(H) * dk, HV = static_cast<int64_t>(H) * dv, Hk = static_cast<int64_t>(H) * k_;
    for (int b = 0; b < seq.B; ++b) {
      const int64_t r0 = seq.offsets[b];
      const int n = seq.length(b);
      if (n == 0) continue;
      const float* kp = kv + static_cast<int64_t>(b) * kv_elems();
      const float* vp = kp + static_cast<int64_t>(k_) * HK;
      scores(io, r0, n, kp, w.s);
      // dP_h (n x k) = dO_h V'_h^T
      gemm(ctx_, k_, n, dv, 1.0f, GemmOp{vp, HV, dv, CUBLAS_OP_T},
           GemmOp{g.dout + r0 * io.ld_out, io.ld_out, dv, CUBLAS_OP_N}, 0.0f, w.dp + r0 * Hk, Hk, k_, H);
    }
    const int64_t items = rows * H;
    softmax_grad<<<grid_for(items * 32, kThreads), kThreads, 0, ctx_.stream>>>(
        w.s, w.dp, lse, io.out, g.dout, io.ld_out, H, dv, items, k_, attn_dropout(c_, step));
    CUDA_CHECK_LAUNCH();
    int longest = 0;
    for (int b = 0; b < seq.B; ++b) {
      const int64_t r0 = seq.offsets[b];
      const int n = seq.length(b);
      longest = std::max(longest, n);
      if (n == 0) continue;
      const float* kp = kv + static_cast<int64_t>(b) * kv_elems();
      const GemmOp P{w.s + r0 * Hk, Hk, k_, CUBLAS_OP_T}, dS_T{w.dp + r0 * Hk, Hk, k_, CUBLAS_OP_T};
      // dV'_h (k x dv) = P'_h^T dO_h;  dK'_h = tau dS_h^T Q_h
      gemm(ctx_, dv, k_, n, 1.0f, GemmOp{g.dout + r0 * io.ld_out, io.ld_out, dv, CUBLAS_OP_N}, P, 0.0f,
           w.dvp, HV, dv, H);
      gemm(ctx_, dk, k_, n, tau_, GemmOp{io.q + r0 * io.ld_in, io.ld_in, dk, CUBLAS_OP_N}, dS_T, 0.0f, w.dkp, HK, dk,
           H);
      // dQ_h (n x dk) = tau dS_h K'_h
      gemm(ctx_, dk, n, k_, tau_, GemmOp{kp, HK, dk, CUBLAS_OP_N}, GemmOp{w.dp + r0 * Hk, Hk, k_, CUBLAS_OP_N}, 0.0f,
           g.dq + r0 * io.ld_in, io.ld_in, dk, H);
      // dK_b (n x H dk) = E_n dK'_b;  dV_b = E_n dV'_b
      const GemmOp En_N{en_rows(seq, En, r0), k_, 0, CUBLAS_OP_N};
      gemm(ctx_, HK, n, k_, 1.0f, GemmOp{w.dkp, HK, 0, CUBLAS_OP_N}, En_N, 0.0f, g.dk + r0 * io.ld_in, io.ld_in, 0);
      gemm(ctx_, HV, n, k_, 1.0f, GemmOp{w.dvp, HV, 0, CUBLAS_OP_N}, En_N, 0.0f, g.dv + r0 * io.ld_in, io.ld_in, 0);
      // G_b (n x k) = K_b dK'_b^T + V_b dV'_b^T
      gemm(ctx_, k_, n, HK, 1.0f, GemmOp{w.dkp, HK, 0, CUBLAS_OP_T},
           GemmOp{io.k + r0 * io.ld_in, io.ld_in, 0, CUBLAS_OP_N}, 0.0f, w.g + r0 * k_, k_, 0);
      gemm(ctx_, k_, n, HV, 1.0f, GemmOp{w.dvp, HV, 0, CUBLAS_OP_T},
           GemmOp{io.v + r0 * io.ld_in, io.ld_in, 0, CUBLAS_OP_N}, 1.0f, w.g + r0 * k_, k_, 0);
    }
    if (longest == 0) return;
    const int64_t elems = static_cast<int64_t>(longest) * k_;
    projection_grad<<<grid_for(elems, kThreads), kThreads, 0, ctx_.stream>>>(
        this->param_grad(0), w.g, seq.dev_offsets, seq.key_mask != nullptr ? seq.dev_key_mask : nullptr, seq.B,
        longest, k_);
    CUDA_CHECK_LAUNCH();
  }

 private:
  struct Work {
    float* en;   // rows x k: E_n of every row (with a key mask)
    float* s;    // rows x heads x k: scores, then P'
    float* dp;   // rows x heads x k: dP, then dS
    float* g;    // rows x k: K_b dK'_b^T + V_b dV'_b^T
    float* dkp;  // k x H dk: one example's dK'_b
    float* dvp;  // k x H dv: one example's dV'_b
  };

  // The scratch layout for `rows` rows from `base` (nullptr: only its size, in *bytes).
  Work carve(void* base, int64_t rows, size_t* bytes) const {
    ScratchCarver sc(base);
    const size_t R = static_cast<size_t>(rows), k = static_cast<size_t>(k_), H = static_cast<size_t>(c_.heads);
    Work w{};
    w.en = sc.take<float>(R * k);
    w.s = sc.take<float>(R * H * k);
    w.dp = sc.take<float>(R * H * k);
    w.g = sc.take<float>(R * k);
    w.dkp = sc.take<float>(k * H * c_.dk);
    w.dvp = sc.take<float>(k * H * c_.dv);
    *bytes = sc.used();
    return w;
  }

  int64_t kv_elems() const { return static_cast<int64_t>(k_) * c_.heads * (c_.dk + c_.dv); }
  size_t lse_bytes(int64_t rows) const {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads, Arena::kAlign);
  }
  float* kv_base(void* saved, int64_t rows) const {
    return reinterpret_cast<float*>(static_cast<char*>(saved) + lse_bytes(rows));
  }

  // Checks the batch against the plan and the pointers the kernels need.
  void prepare(const SeqBatch& seq, const AttnIO<float>& io) const {
    check_device_batch(seq, c_.max_len, "linformer");
    check_gemm_strides(io, c_, "linformer");
  }

  // E_n of the batch: E itself (each example uses its first n rows) without a key mask, else the packed
  // masked rows, built into w.en.
  const float* projection(const SeqBatch& seq, const Work& w) const {
    if (seq.key_mask == nullptr) return this->param(0);
    const int64_t rows = seq.rows();
    masked_projection<<<grid_for(rows * k_, kThreads), kThreads, 0, ctx_.stream>>>(
        w.en, this->param(0), seq.dev_offsets, seq.dev_key_mask, seq.B, rows, k_);
    CUDA_CHECK_LAUNCH();
    return w.en;
  }

  // E_n of the example whose rows start at r0 (row-major n x k, row stride k) within projection()'s result.
  const float* en_rows(const SeqBatch& seq, const float* En, int64_t r0) const {
    return seq.key_mask != nullptr ? En + r0 * k_ : En;
  }

  // S_h (n x k, rows r0.. of s laid out [row][head][k]) = tau Q_h K'_h^T for every head of one example.
  void scores(const AttnIO<float>& io, int64_t r0, int n, const float* kp, float* s) const {
    const int H = c_.heads, dk = c_.dk;
    const int64_t HK = static_cast<int64_t>(H) * dk, Hk = static_cast<int64_t>(H) * k_;
    gemm(ctx_, k_, n, dk, tau_, GemmOp{kp, HK, dk, CUBLAS_OP_T}, GemmOp{io.q + r0 * io.ld_in, io.ld_in, dk, CUBLAS_OP_N},
         0.0f, s + r0 * Hk, Hk, k_, H);
  }

  AttnConfig c_;
  Context ctx_;
  int k_ = 0;
  float tau_ = 1.0f;
};

std::unique_ptr<Attention<float>> make_linformer(const AttnConfig& cfg, const Context& ctx) {
  return std::make_unique<LinformerGpu>(cfg, ctx);
}

[[maybe_unused]] const bool registered = register_attention("linformer", make_linformer);

}  // namespace

}  // namespace lra::cuda
