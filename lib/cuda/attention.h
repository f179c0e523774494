// Attention variants on the GPU: the same Attention<float> interface as on the CPU (lib/attn), fed
// device pointers (SeqBatch's dev_offsets / dev_key_mask, AttnIO, saved and scratch memory planned
// through saved_bytes / scratch_bytes), enqueued on the Context's stream. A variant without a GPU path
// is an error that lists the variants with one; there is never a silent fallback to the CPU.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "attn/block_sparse.h"
#include "cuda/context.h"

namespace lra::cuda {

// The registered variants that have a GPU path, in registry order.
std::vector<std::string> attention_names();
bool has_attention(const std::string& name);
// Throws for a variant without a GPU path, naming the ones with one.
std::unique_ptr<Attention<float>> make_attention(const std::string& name, const AttnConfig& cfg, const Context& ctx);

// One factory per implementation file.
std::unique_ptr<Attention<float>> make_softmax_attention(const AttnConfig& cfg, const Context& ctx);
// linear, performer, performer-relu, cosformer.
std::unique_ptr<Attention<float>> make_kernelized_attention(const std::string& name, const AttnConfig& cfg,
                                                            const Context& ctx);
// local, sparse, longformer, bigbird: the variant's pattern (AttnInfo::sparse_pattern) on the GPU engine.
std::unique_ptr<Attention<float>> make_block_sparse_attention(const AttnConfig& cfg, const Context& ctx,
                                                              const SparsePattern& pattern);
std::unique_ptr<Attention<float>> make_linformer_attention(const AttnConfig& cfg, const Context& ctx);
// query_chunk: the most query rows of one materialised logit block (0: as many as fit its budget).
std::unique_ptr<Attention<float>> make_synthesizer_attention(const AttnConfig& cfg, const Context& ctx,
                                                             int query_chunk = 0);
std::unique_ptr<Attention<float>> make_sinkhorn_attention(const AttnConfig& cfg, const Context& ctx);
std::unique_ptr<Attention<float>> make_nystromformer_attention(const AttnConfig& cfg, const Context& ctx);
std::unique_ptr<Attention<float>> make_reformer_attention(const AttnConfig& cfg, const Context& ctx);

}  // namespace lra::cuda
