// Which variants have a GPU path, and the factory that picks it.
#include "cuda/attention.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <utility>

#include "core/check.h"

namespace lra::cuda {

namespace {
bool kernelized(const std::string& n) {
  return n == "linear" || n == "performer" || n == "performer-relu" || n == "cosformer";
}

// The variants with a GPU file of their own.
using Factory = std::unique_ptr<Attention<float>> (*)(const AttnConfig&, const Context&);
const std::vector<std::pair<std::string, Factory>>& own_files() {
  static const std::vector<std::pair<std::string, Factory>> f = {
      {"linformer", make_linformer_attention},
      {"synthesizer", [](const AttnConfig& c, const Context& ctx) { return make_synthesizer_attention(c, ctx); }},
      {"sinkhorn", make_sinkhorn_attention},
      {"nystromformer", make_nystromformer_attention},
      {"reformer", make_reformer_attention},
  };
  return f;
}

Factory own_file(const std::string& n) {
  for (const auto& [name, make] : own_files())
    if (name == n) return make;
  return nullptr;
}
}  // namespace

void check_device_batch(const SeqBatch& seq, int max_len, const char* who, bool device_offsets) {
  check_sequence_lengths(seq, max_len);
  LRA_CHECK(!device_offsets || seq.B == 0 || seq.dev_offsets != nullptr,
            "{} on the GPU needs the batch's offsets in device memory (SeqBatch::dev_offsets)", who);
  LRA_CHECK(seq.key_mask == nullptr || seq.dev_key_mask != nullptr,
            "{} on the GPU needs the key mask in device memory (SeqBatch::dev_key_mask)", who);
}

void check_gemm_strides(const AttnIO<float>& io, const AttnConfig& cfg, const char* who) {
  const int64_t H = cfg.heads;
  LRA_CHECK(io.ld_in >= H * std::max(cfg.dk, cfg.dv) && io.ld_out >= H * cfg.dv,
            "{} on the GPU: row strides {} (q, k, v) and {} (out) are narrower than the heads' columns", who,
            io.ld_in, io.ld_out);
  LRA_CHECK(io.ld_in <= INT_MAX && io.ld_out <= INT_MAX,
            "{} on the GPU: row strides {} and {} are beyond cuBLAS's 32-bit sizes", who, io.ld_in, io.ld_out);
}

std::vector<std::string> attention_names() {
  std::vector<std::string> out;
  for (const std::string& n : lra::attention_names())
    if (n == "softmax" || kernelized(n) || find_attention(n).sparse_pattern || own_file(n) != nullptr)
      out.push_back(n);
  return out;
}

bool has_attention(const std::string& name) {
  for (const std::string& n : attention_names())
    if (n == name) return true;
  return false;
}

std::unique_ptr<Attention<float>> make_attention(const std::string& name, const AttnConfig& cfg, const Context& ctx) {
  const AttnInfo& info = find_attention(name);  // an unknown name lists every registered variant
  if (name == "softmax") return make_softmax_attention(cfg, ctx);
  if (kernelized(name)) return make_kernelized_attention(name, cfg, ctx);
  if (info.sparse_pattern) return make_block_sparse_attention(cfg, ctx, *info.sparse_pattern(cfg));
  if (const Factory make = own_file(name)) return make(cfg, ctx);
  LRA_FAIL("attention '{}' has no GPU implementation yet; on --device cuda use one of: {} (or run it with "
           "--device cpu)",
           name, fmt::join(attention_names(), ", "));
}

}  // namespace lra::cuda
