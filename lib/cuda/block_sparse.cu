// Block-sparse softmax attention on the GPU (local, sparse, longformer, bigbird): the maths, masks,
// dropout stream and saved state of lib/attn/block_sparse.cpp, with the query blocks and key spans
// computed on the device by the same LRA_HD pattern functions (lib/attn/sparse_pattern.h).
//
// Per query row q with visible keys J(q) (the spans of its block, minus hidden keys, minus keys outside
// a span's band, minus k > q when causal), tau = dk^-1/2:
//   forward:  S_qk = tau q.k,  LSE_q = log sum_{k in J(q)} exp S_qk,  P = exp(S - LSE),
//             P' = P z / (1-p) (attention dropout),  O_q = sum_k P'_qk v_k
//   backward: D_q = dO_q . O_q,  dS_qk = P_qk ((dO_q . v_k) z / (1-p) - D_q),
//             dQ_q = tau sum_k dS_qk k_k,  dK_k = tau sum_q dS_qk q_q,  dV_k = sum_q P'_qk dO_q
// A query with no visible key outputs 0 and gets LSE = +inf (so P = 0 in the backward). z keeps element
// (row r, head h, key k) when the 24 high bits of Philox word (r H + h) L_pad + k are >= the threshold:
// the CPU's mask.
//
// Kernels, each on a grid (query block, head, example) of 128 threads (4 warps); thread 0 lists the
// block's key spans into shared memory, then each warp takes query rows (forward, dQ) or keys (dK, dV):
//   bs_forward: a warp per query row: its lanes score 32 keys at a time (one key each), an online
//               softmax keeps the running max and sum, and the lanes accumulate O over the head's columns.
//   bs_dq:      a warp per query row: D_q, then dS for 32 keys at a time and dQ over the head's columns.
//   bs_dkdv:    a warp per key of the block's spans: loops over the block's rows that see the key and
//               sums their dK and dV terms, then adds them into dK and dV with atomicAdd (dK and dV are
//               zeroed first). A key seen by several query blocks (BigBird's global blocks, Longformer's
//               global columns, the fixed pattern's summaries) gets their sums in any order, so the last
//               bits of dK and dV may differ between runs for those patterns; local attention, where each
//               key has one block, is the same bits every run.
// Saved: LSE per (row, head). Scratch: D per (row, head).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>

#include "attn/block_sparse.h"
#include "core/arena.h"
#include "core/rng.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"

namespace lra::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kPerLane = 4;  // head columns per lane: head sizes up to 128
constexpr unsigned kFull = 0xffffffffu;

// The exact-attention launch arguments (shapes in cuda/attention.h; drop's seed also draws the pattern's
// random blocks) and the pattern's.
struct Params : ExactAttnParams {
  int max_spans;
  int work_ints;
  PatternSpec pat;
};

__device__ __forceinline__ bool key_visible(const Params& p, int64_t row) {
  return p.mask == nullptr || p.mask[row] != 0;
}

// The dropout factor z / (1-p) of element (row, h, key), or 1 without dropout.
__device__ __forceinline__ float drop_factor(const Params& p, int64_t row, int h, int key) {
  return p.drop.factor(dropout_element(p.drop.rows, row, h, p.heads, p.L_pad) + static_cast<uint64_t>(key));
}

// sum_d a[d] b[d] over n columns, by one thread.
__device__ __forceinline__ float dot(const float* __restrict__ a, const float* __restrict__ b, int n) {
  float s = 0.0f;
  for (int d = 0; d < n; ++d) s = fmaf(a[d], b[d], s);
  return s;
}

constexpr size_t align16(size_t b) { return (b + 15) & ~static_cast<size_t>(15); }

// Dynamic shared memory: the spans, the pattern's workspace, then `floats_per_warp` floats per warp.
size_t smem_bytes(int max_spans, int work_ints, int floats_per_warp) {
  return align16(sizeof(KeySpan) * static_cast<size_t>(max_spans)) +
         align16(sizeof(int) * static_cast<size_t>(work_ints)) +
         sizeof(float) * static_cast<size_t>(kWarps) * static_cast<size_t>(floats_per_warp);
}

struct Block {
  int64_t r0;  // the example's first packed row
  RowRange r;  // the block's query rows, in the example
  int ns;      // key spans
  const KeySpan* spans;
  float* warp_buf;  // this warp's floats
};

// Called by every thread of a block whose query block exists: thread 0 lists the spans into shared memory.
__device__ __forceinline__ Block setup(const Params& p, int64_t r0, int n, int h, int qb, char* smem,
                                       int floats_per_warp) {
  __shared__ int info[3];
  KeySpan* spans = reinterpret_cast<KeySpan*>(smem);
  int* work = reinterpret_cast<int*>(smem + align16(sizeof(KeySpan) * static_cast<size_t>(p.max_spans)));
  float* bufs = reinterpret_cast<float*>(reinterpret_cast<char*>(work) +
                                         align16(sizeof(int) * static_cast<size_t>(p.work_ints)));
  if (threadIdx.x == 0) {
    const RowRange r = pattern_query_block(p.pat, n, qb);
    info[0] = r.begin;
    info[1] = r.end;
    info[2] = pattern_key_spans(p.pat, n, h, qb, p.drop.seed, spans, work);
  }
  __syncthreads();
  Block blk;
  blk.r0 = r0;
  blk.r = RowRange{info[0], info[1]};
  blk.ns = info[2];
  blk.spans = spans;
  blk.warp_buf = bufs + (threadIdx.x >> 5) * floats_per_warp;
  return blk;
}

__global__ void __launch_bounds__(kThreads) bs_forward(Params p) {
  extern __shared__ float4 smem_f4[];
  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t r0 = p.offsets[b];
  const int n = p.offsets[b + 1] - p.offsets[b];
  if (n == 0 || qb >= pattern_num_query_blocks(p.pat, n)) return;
  const Block blk = setup(p, r0, n, h, qb, reinterpret_cast<char*>(smem_f4), p.hk);
  const int lane = threadIdx.x & 31;
  float* qs = blk.warp_buf;  // tau q of the warp's row
  for (int i = blk.r.begin + (threadIdx.x >> 5); i < blk.r.end; i += kWarps) {
    const int64_t row = r0 + i;
    for (int d = lane; d < p.hk; d += 32) qs[d] = p.q[row * p.ld_in + static_cast<int64_t>(h) * p.hk + d] * p.tau;
    __syncwarp();
    float m = -INFINITY, l = 0.0f, o[kPerLane] = {};
    for (int s = 0; s < blk.ns; ++s) {
      int lo, hi;
      span_visible(blk.spans[s], i, p.causal, &lo, &hi);
      for (int k0 = lo; k0 < hi; k0 += 32) {
        const int key = k0 + lane;
        const bool ok = key < hi && key_visible(p, r0 + key);
        const float sc = ok ? dot(qs, p.k + (r0 + key) * p.ld_in + static_cast<int64_t>(h) * p.hk, p.hk) : -INFINITY;
        const float cmax = warp_max(sc);
        if (cmax == -INFINITY) continue;  // the same for every lane
        const float mn = fmaxf(m, cmax);
        const float corr = expf(m - mn);  // 0 while m = -inf
        const float pr = ok ? expf(sc - mn) : 0.0f;
        l = l * corr + warp_sum(pr);
        const float pd = ok ? pr * drop_factor(p, row, h, key) : 0.0f;
#pragma unroll
        for (int t = 0; t < kPerLane; ++t) o[t] *= corr;
        const int cnt = min(32, hi - k0);
        for (int j = 0; j < cnt; ++j) {
          const float pj = __shfl_sync(kFull, pd, j);
          const float* vr = p.v + (r0 + k0 + j) * p.ld_in + static_cast<int64_t>(h) * p.hv;
#pragma unroll
          for (int t = 0; t < kPerLane; ++t) {
            const int d = lane + 32 * t;
            if (d < p.hv) o[t] = fmaf(pj, vr[d], o[t]);
          }
        }
        m = mn;
      }
    }
    const bool none = l == 0.0f;  // l >= 1 once a key is visible (its max term is exp(0))
    const float inv = none ? 0.0f : 1.0f / l;
    float* orow = p.out + row * p.ld_out + static_cast<int64_t>(h) * p.hv;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < p.hv) orow[d] = o[t] * inv;
    }
    if (lane == 0) p.lse[row * p.heads + h] = none ? INFINITY : m + logf(l);
    __syncwarp();  // qs is rewritten for the next row
  }
}

__global__ void __launch_bounds__(kThreads) bs_dq(Params p) {
  extern __shared__ float4 smem_f4[];
  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t r0 = p.offsets[b];
  const int n = p.offsets[b + 1] - p.offsets[b];
  if (n == 0 || qb >= pattern_num_query_blocks(p.pat, n)) return;
  const Block blk = setup(p, r0, n, h, qb, reinterpret_cast<char*>(smem_f4), p.hk + p.hv);
  const int lane = threadIdx.x & 31;
  float* qs = blk.warp_buf;        // tau q of the warp's row
  float* dos = blk.warp_buf + p.hk;  // its dO
  for (int i = blk.r.begin + (threadIdx.x >> 5); i < blk.r.end; i += kWarps) {
    const int64_t row = r0 + i;
    float part = 0.0f;
    for (int d = lane; d < p.hk; d += 32) qs[d] = p.q[row * p.ld_in + static_cast<int64_t>(h) * p.hk + d] * p.tau;
    for (int d = lane; d < p.hv; d += 32) {
      const int64_t e = row * p.ld_out + static_cast<int64_t>(h) * p.hv + d;
      dos[d] = p.dout[e];
      part = fmaf(p.dout[e], p.out[e], part);
    }
    __syncwarp();  // qs and dos are written before any lane reads them
    const float D = warp_sum(part);
    if (lane == 0) p.dsum[row * p.heads + h] = D;
    const float lse = p.lse[row * p.heads + h];
    float acc[kPerLane] = {};
    for (int s = 0; s < blk.ns && lse != INFINITY; ++s) {
      int lo, hi;
      span_visible(blk.spans[s], i, p.causal, &lo, &hi);
      for (int k0 = lo; k0 < hi; k0 += 32) {
        const int key = k0 + lane;
        float ds = 0.0f;
        if (key < hi && key_visible(p, r0 + key)) {
          const int64_t kr = (r0 + key) * p.ld_in;
          const float P = expf(dot(qs, p.k + kr + static_cast<int64_t>(h) * p.hk, p.hk) - lse);
          const float dp = dot(dos, p.v + kr + static_cast<int64_t>(h) * p.hv, p.hv) * drop_factor(p, row, h, key);
          ds = P * (dp - D);
        }
        const int cnt = min(32, hi - k0);
        for (int j = 0; j < cnt; ++j) {
          const float dsj = __shfl_sync(kFull, ds, j);
          const float* krow = p.k + (r0 + k0 + j) * p.ld_in + static_cast<int64_t>(h) * p.hk;
#pragma unroll
          for (int t = 0; t < kPerLane; ++t) {
            const int d = lane + 32 * t;
            if (d < p.hk) acc[t] = fmaf(dsj, krow[d], acc[t]);
          }
        }
      }
    }
    float* dqrow = p.dq + row * p.ld_in + static_cast<int64_t>(h) * p.hk;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < p.hk) dqrow[d] = acc[t] * p.tau;
    }
    __syncwarp();  // qs and dos are rewritten for the next row
  }
}

__global__ void __launch_bounds__(kThreads) bs_dkdv(Params p) {
  extern __shared__ float4 smem_f4[];
  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t r0 = p.offsets[b];
  const int n = p.offsets[b + 1] - p.offsets[b];
  if (n == 0 || qb >= pattern_num_query_blocks(p.pat, n)) return;
  const Block blk = setup(p, r0, n, h, qb, reinterpret_cast<char*>(smem_f4), 0);
  const int lane = threadIdx.x & 31;
  for (int s = 0; s < blk.ns; ++s) {
    const KeySpan sp = blk.spans[s];
    const int kend = p.causal ? min(sp.end, blk.r.end) : sp.end;  // later keys are after every row
    for (int key = sp.begin + (threadIdx.x >> 5); key < kend; key += kWarps) {
      const int64_t krow = r0 + key;
      if (!key_visible(p, krow)) continue;  // the same for every lane
      // The block's rows that see the key.
      int ilo = blk.r.begin, ihi = blk.r.end;
      if (sp.radius >= 0) {
        ilo = max(ilo, key - sp.radius);
        ihi = min(ihi, key + sp.radius + 1);
      }
      if (p.causal) ilo = max(ilo, key);
      float kv[kPerLane], vv[kPerLane], gk[kPerLane] = {}, gv[kPerLane] = {};
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) {
        const int d = lane + 32 * t;
        kv[t] = d < p.hk ? p.k[krow * p.ld_in + static_cast<int64_t>(h) * p.hk + d] : 0.0f;
        vv[t] = d < p.hv ? p.v[krow * p.ld_in + static_cast<int64_t>(h) * p.hv + d] : 0.0f;
      }
      for (int i = ilo; i < ihi; ++i) {
        const int64_t row = r0 + i;
        const float lse = p.lse[row * p.heads + h];
        if (lse == INFINITY) continue;  // the same for every lane
        const float* qrow = p.q + row * p.ld_in + static_cast<int64_t>(h) * p.hk;
        const float* dorow = p.dout + row * p.ld_out + static_cast<int64_t>(h) * p.hv;
        float qv[kPerLane], dov[kPerLane], sp_part = 0.0f, dp_part = 0.0f;
#pragma unroll
        for (int t = 0; t < kPerLane; ++t) {
          const int d = lane + 32 * t;
          qv[t] = d < p.hk ? qrow[d] * p.tau : 0.0f;
          dov[t] = d < p.hv ? dorow[d] : 0.0f;
          sp_part = fmaf(qv[t], kv[t], sp_part);
          dp_part = fmaf(dov[t], vv[t], dp_part);
        }
        const float P = expf(warp_sum(sp_part) - lse);
        const float z = drop_factor(p, row, h, key);
        const float ds = P * (warp_sum(dp_part) * z - p.dsum[row * p.heads + h]);
        const float pz = P * z;
#pragma unroll
        for (int t = 0; t < kPerLane; ++t) {
          gk[t] = fmaf(ds, qv[t], gk[t]);
          gv[t] = fmaf(pz, dov[t], gv[t]);
        }
      }
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) {
        const int d = lane + 32 * t;
        if (d < p.hk) atomicAdd(p.dk + krow * p.ld_in + static_cast<int64_t>(h) * p.hk + d, gk[t]);
        if (d < p.hv) atomicAdd(p.dv + krow * p.ld_in + static_cast<int64_t>(h) * p.hv + d, gv[t]);
      }
    }
  }
}

class BlockSparseGpu final : public Attention<float> {
 public:
  BlockSparseGpu(const AttnConfig& c, const Context& ctx, const SparsePattern& pattern)
      : c_(c), ctx_(ctx), pat_(pattern.spec()), causal_(BlockSparseOptions::parse(c).causal) {
    LRA_CHECK(c.dk >= 1 && c.dk <= 32 * kPerLane && c.dv >= 1 && c.dv <= 32 * kPerLane,
              "block-sparse attention on the GPU supports head sizes 1 .. {} (got dk = {}, dv = {}); use more, "
              "smaller heads or --device cpu",
              32 * kPerLane, c.dk, c.dv);
    max_spans_ = pattern_max_spans(pat_, c.max_len);
    work_ints_ = pattern_work_ints(pat_, c.max_len);
    fwd_smem_ = smem_bytes(max_spans_, work_ints_, c.dk);
    dq_smem_ = smem_bytes(max_spans_, work_ints_, c.dk + c.dv);
    dkdv_smem_ = smem_bytes(max_spans_, work_ints_, 0);
    const size_t need = std::max({fwd_smem_, dq_smem_, dkdv_smem_});
    LRA_CHECK(need <= 48 * 1024 || ctx_.smem_per_block_optin == 0 || need <= ctx_.smem_per_block_optin,
              "this block-sparse pattern lists up to {} key spans per query block for {} rows and needs {} bytes of "
              "shared memory per block; this GPU allows {}. Use a larger block (fewer blocks per example) or "
              "--device cpu",
              max_spans_, c.max_len, need, ctx_.smem_per_block_optin);
    if (need > 48 * 1024) {
      CUDA_CHECK(cudaFuncSetAttribute(bs_forward, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(fwd_smem_)));
      CUDA_CHECK(cudaFuncSetAttribute(bs_dq, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dq_smem_)));
      CUDA_CHECK(cudaFuncSetAttribute(bs_dkdv, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(dkdv_smem_)));
    }
  }

  // LSE per (row, head), as on the CPU.
  size_t saved_bytes(int, int64_t rows) const override {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads, Arena::kAlign);
  }
  // D per (row, head).
  size_t scratch_bytes(int, int64_t rows) const override {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads, Arena::kAlign);
  }

  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void*, const AttnStep& step) override {
    const int blocks = prepare(seq);
    if (blocks == 0) return;
    const Params p = params(exact_attn_forward(c_, causal_, seq, io, step, static_cast<float*>(saved)));
    bs_forward<<<grid(seq, blocks), kThreads, fwd_smem_, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
  }

  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep& step) override {
    const int blocks = prepare(seq);
    if (blocks == 0) return;
    const Params p = params(exact_attn_backward(c_, causal_, seq, io, g, step, static_cast<const float*>(saved),
                                                static_cast<float*>(scratch)));
    const size_t pitch = sizeof(float) * static_cast<size_t>(io.ld_in);
    const size_t rows = static_cast<size_t>(seq.rows());
    CUDA_CHECK(cudaMemset2DAsync(g.dk, pitch, 0, sizeof(float) * static_cast<size_t>(c_.heads) * c_.dk, rows,
                                 ctx_.stream));
    CUDA_CHECK(cudaMemset2DAsync(g.dv, pitch, 0, sizeof(float) * static_cast<size_t>(c_.heads) * c_.dv, rows,
                                 ctx_.stream));
    bs_dq<<<grid(seq, blocks), kThreads, dq_smem_, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    bs_dkdv<<<grid(seq, blocks), kThreads, dkdv_smem_, ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
  }

 private:
  // Checks the batch against the plan (host offsets) and returns the most query blocks of an example (0
  // when there is nothing to do).
  int prepare(const SeqBatch& seq) const {
    check_device_batch(seq, c_.max_len, "block-sparse attention");
    LRA_CHECK(seq.B <= 65535 && c_.heads <= 65535,
              "block-sparse attention on the GPU takes at most 65535 examples and heads per call (got {} and {})",
              seq.B, c_.heads);
    int blocks = 0;
    for (int b = 0; b < seq.B; ++b) blocks = std::max(blocks, pattern_num_query_blocks(pat_, seq.length(b)));
    return blocks;
  }

  dim3 grid(const SeqBatch& seq, int blocks) const {
    return dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(c_.heads), static_cast<unsigned>(seq.B));
  }

  Params params(const ExactAttnParams& exact) const { return Params{exact, max_spans_, work_ints_, pat_}; }

  AttnConfig c_;
  Context ctx_;
  PatternSpec pat_;
  bool causal_;
  int max_spans_ = 1, work_ints_ = 0;
  size_t fwd_smem_ = 0, dq_smem_ = 0, dkdv_smem_ = 0;
};

[[maybe_unused]] const bool registered =
    register_pattern_engine([](const AttnConfig& cfg, const Context& ctx, const SparsePattern& pattern) {
      return std::unique_ptr<Attention<float>>(std::make_unique<BlockSparseGpu>(cfg, ctx, pattern));
    });

}  // namespace

}  // namespace lra::cuda
