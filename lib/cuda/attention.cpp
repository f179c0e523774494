// Which variants have a GPU path, and the factory that picks it.
#include "cuda/attention.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace lra::cuda {

namespace {
bool kernelized(const std::string& n) {
  return n == "linear" || n == "performer" || n == "performer-relu" || n == "cosformer";
}
}  // namespace

std::vector<std::string> attention_names() {
  std::vector<std::string> out;
  for (const std::string& n : lra::attention_names())
    if (n == "softmax" || kernelized(n) || n == "reformer") out.push_back(n);
  return out;
}

bool has_attention(const std::string& name) {
  for (const std::string& n : attention_names())
    if (n == name) return true;
  return false;
}

std::unique_ptr<Attention<float>> make_attention(const std::string& name, const AttnConfig& cfg, const Context& ctx) {
  find_attention(name);  // an unknown name lists every registered variant
  if (name == "softmax") return make_softmax_attention(cfg, ctx);
  if (kernelized(name)) return make_kernelized_attention(name, cfg, ctx);
  if (name == "reformer") return make_reformer_attention(cfg, ctx);
  LRA_FAIL("attention '{}' has no GPU implementation yet; on --device cuda use one of: {} (or run it with "
           "--device cpu)",
           name, fmt::join(attention_names(), ", "));
}

}  // namespace lra::cuda
