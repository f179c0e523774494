// The GPU paths the .cu files registered, and the factory that picks one.
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

struct Registry {
  std::vector<std::pair<std::string, AttentionFactory>> variants;
  PatternFactory pattern_engine;
};

Registry& registry() {
  static Registry r;
  return r;
}

const AttentionFactory* registered(const std::string& name) {
  for (const auto& [n, make] : registry().variants)
    if (n == name) return &make;
  return nullptr;
}

}  // namespace

bool register_attention(const std::string& name, AttentionFactory make) {
  LRA_CHECK(registered(name) == nullptr, "attention '{}' registered its GPU path twice", name);
  registry().variants.emplace_back(name, std::move(make));
  return true;
}

bool register_pattern_engine(PatternFactory make) {
  LRA_CHECK(registry().pattern_engine == nullptr, "the GPU's sparse-pattern engine registered twice");
  registry().pattern_engine = std::move(make);
  return true;
}

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
    if (registered(n) != nullptr || (find_attention(n).sparse_pattern && registry().pattern_engine))
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
  if (const AttentionFactory* make = registered(name)) return declare_params(info, cfg, (*make)(cfg, ctx));
  if (info.sparse_pattern && registry().pattern_engine)
    return declare_params(info, cfg, registry().pattern_engine(cfg, ctx, *info.sparse_pattern(cfg)));
  LRA_FAIL("attention '{}' has no GPU implementation yet; on --device cuda use one of: {} (or run it with "
           "--device cpu)",
           name, fmt::join(attention_names(), ", "));
}

}  // namespace lra::cuda
