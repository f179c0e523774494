// Attention variants on the GPU: the same Attention<float> interface as on the CPU (lib/attn), fed
// device pointers (SeqBatch's dev_offsets / dev_key_mask, AttnIO, saved and scratch memory planned
// through saved_bytes / scratch_bytes), enqueued on the Context's stream. A variant without a GPU path
// is an error that lists the variants with one; there is never a silent fallback to the CPU.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "attn/attention.h"
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
std::unique_ptr<Attention<float>> make_reformer_attention(const AttnConfig& cfg, const Context& ctx);

}  // namespace lra::cuda
