// Attention variants on the GPU: the same Attention<float> interface as on the CPU (lib/attn), fed
// device pointers (SeqBatch's dev_offsets / dev_key_mask, AttnIO, saved and scratch memory planned
// through saved_bytes / scratch_bytes), enqueued on the Context's stream. A variant without a GPU path
// is an error that lists the variants with one; there is never a silent fallback to the CPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "attn/block_sparse.h"
#include "attn/row_softmax.h"
#include "core/host_device.h"
#include "core/rng.h"
#include "cuda/context.h"

namespace lra::cuda {

// A call's attention dropout as the kernels read it: the CPU's mask, element e kept when the Philox word e
// of (seed, stream) passes thr = dropout_threshold(p), kept elements scaled by 1/(1-p).
struct AttnDropout {
  bool on = false;  // training and p > 0
  uint32_t thr = 0;
  float scale = 1.0f;
  uint64_t seed = 0;
  uint64_t stream = 0;
  RowMap rows;  // the call's rows in the global batch (dropout_element)

  // z / (1-p) of element e: scale when kept, 0 when dropped, 1 when dropout is off.
  LRA_HD float factor(uint64_t e) const {
    return on ? dropout_factor(philox_word(seed, stream, e), thr, scale) : 1.0f;
  }
};

inline AttnDropout attn_dropout(const AttnConfig& cfg, const AttnStep& step) {
  const float p = step.training ? cfg.attention_dropout : 0.0f;
  AttnDropout d;
  d.on = p > 0.0f;
  d.thr = dropout_threshold(p);
  d.scale = 1.0f / (1.0f - p);
  d.seed = step.seed;
  d.stream = step.stream;
  d.rows = step.rows;
  return d;
}

// The launch arguments of the exact-attention kernels (softmax.cu, block_sparse.cu). Shapes: q, k, v, dq,
// dk, dv (rows, ld_in), head h at columns h*hk (v, dv: h*hv); out, dout (rows, ld_out), head h at h*hv;
// lse, dsum (rows, heads); offsets (B + 1); mask (rows).
struct ExactAttnParams {
  const float* q;
  const float* k;
  const float* v;
  int64_t ld_in;
  float* out;  // written by the forward, read by the backward
  const float* dout;
  int64_t ld_out;
  float* dq;
  float* dk;
  float* dv;
  float* lse;   // log-sum-exp per (row, head): written by the forward, read by the backward
  float* dsum;  // D_i = dO_i . O_i per (row, head)
  const int32_t* offsets;
  const uint8_t* mask;  // nullptr = every key visible
  int heads;
  int hk;  // head size of q and k
  int hv;  // head size of v
  float tau;
  bool causal;
  AttnDropout drop;
  int L_pad;
};

// A forward's arguments: the call's inputs, output and masks, the log-sum-exp into `lse`.
inline ExactAttnParams exact_attn_forward(const AttnConfig& cfg, bool causal, const SeqBatch& seq,
                                          const AttnIO<float>& io, const AttnStep& step, float* lse) {
  ExactAttnParams p{};
  p.q = io.q;
  p.k = io.k;
  p.v = io.v;
  p.ld_in = io.ld_in;
  p.out = io.out;
  p.ld_out = io.ld_out;
  p.lse = lse;
  p.offsets = seq.dev_offsets;
  p.mask = seq.key_mask != nullptr ? seq.dev_key_mask : nullptr;
  p.heads = cfg.heads;
  p.hk = cfg.dk;
  p.hv = cfg.dv;
  p.tau = 1.0f / std::sqrt(static_cast<float>(cfg.dk));
  p.causal = causal;
  p.drop = attn_dropout(cfg, step);
  p.L_pad = seq.L_pad;
  return p;
}

// A backward's: the forward's, the gradients, the saved log-sum-exp and the row dots into `dsum`.
inline ExactAttnParams exact_attn_backward(const AttnConfig& cfg, bool causal, const SeqBatch& seq,
                                           const AttnIO<float>& io, const AttnGrads<float>& g,
                                           const AttnStep& step, const float* lse, float* dsum) {
  ExactAttnParams p = exact_attn_forward(cfg, causal, seq, io, step, const_cast<float*>(lse));
  p.dout = g.dout;
  p.dq = g.dq;
  p.dk = g.dk;
  p.dv = g.dv;
  p.dsum = dsum;
  return p;
}

// The checks every GPU variant makes of a call's batch: lengths within the plan (check_sequence_lengths),
// the offsets in device memory (unless the variant reads only the host's) and, with a key mask, its device
// copy. `who` names the variant in the messages.
void check_device_batch(const SeqBatch& seq, int max_len, const char* who, bool device_offsets = true);
// For variants that hand q, k, v and out to cuBLAS: row strides wide enough for every head's columns and
// within cuBLAS's 32-bit sizes.
void check_gemm_strides(const AttnIO<float>& io, const AttnConfig& cfg, const char* who);

// The GPU paths. Each .cu file registers its variants at start-up, so no list of names is kept here:
//   [[maybe_unused]] const bool registered = register_attention("linformer", make_linformer);
// and block_sparse.cu registers the engine that runs every variant with a sparse pattern
// (AttnInfo::sparse_pattern). lra_cuda is linked whole, so every registration runs.
using AttentionFactory = std::function<std::unique_ptr<Attention<float>>(const AttnConfig&, const Context&)>;
using PatternFactory =
    std::function<std::unique_ptr<Attention<float>>(const AttnConfig&, const Context&, const SparsePattern&)>;
bool register_attention(const std::string& name, AttentionFactory make);
bool register_pattern_engine(PatternFactory make);

// The registered variants that have a GPU path, in registry order.
std::vector<std::string> attention_names();
bool has_attention(const std::string& name);
// Throws for a variant without a GPU path, naming the ones with one.
std::unique_ptr<Attention<float>> make_attention(const std::string& name, const AttnConfig& cfg, const Context& ctx);

// Synthesizer with an explicit query_chunk: the most query rows of one materialised logit block (0: as
// many as fit its budget); the tests use it to cross chunk boundaries.
std::unique_ptr<Attention<float>> make_synthesizer_attention(const AttnConfig& cfg, const Context& ctx,
                                                             int query_chunk = 0);

}  // namespace lra::cuda
