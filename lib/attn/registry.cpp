#include "attn/attention.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/check.h"

namespace lra {

AttnInfo softmax_attention_info();
AttnInfo cosformer_attention_info();
AttnInfo linear_attention_info();
AttnInfo performer_attention_info();
AttnInfo performer_relu_attention_info();
AttnInfo local_attention_info();
AttnInfo sparse_attention_info();
AttnInfo longformer_attention_info();
AttnInfo bigbird_attention_info();
AttnInfo linformer_attention_info();
AttnInfo synthesizer_attention_info();
AttnInfo reformer_attention_info();
AttnInfo nystromformer_attention_info();
AttnInfo sinkhorn_attention_info();

const std::vector<AttnInfo>& attention_registry() {
  static const std::vector<AttnInfo> registry = {
      softmax_attention_info(),
      cosformer_attention_info(),
      linear_attention_info(),
      performer_attention_info(),
      performer_relu_attention_info(),
      local_attention_info(),
      sparse_attention_info(),
      longformer_attention_info(),
      bigbird_attention_info(),
      linformer_attention_info(),
      synthesizer_attention_info(),
      reformer_attention_info(),
      nystromformer_attention_info(),
      sinkhorn_attention_info(),
  };
  return registry;
}

std::vector<std::string> attention_names() {
  std::vector<std::string> names;
  for (const auto& a : attention_registry()) names.push_back(a.name);
  return names;
}

const AttnInfo& find_attention(const std::string& name) {
  for (const auto& a : attention_registry())
    if (a.name == name) return a;
  LRA_FAIL("unknown attention variant '{}'; valid names: {} (see `lra list attn`)", name,
           fmt::join(attention_names(), ", "));
}

void check_sequence_lengths(const SeqBatch& seq, int max_len) {
  for (int b = 0; b < seq.B; ++b)
    LRA_CHECK(seq.length(b) <= max_len && seq.length(b) <= seq.L_pad,
              "example {} has {} rows; attention was planned for at most {} (padded length {})", b, seq.length(b),
              max_len, seq.L_pad);
}

HyperParam causal_param() {
  return {"causal", false, "unidirectional: query i attends to keys j <= i only"};
}

nlohmann::json resolve_attention_params(const AttnInfo& info, const nlohmann::json& given) {
  LRA_CHECK(given.is_object() || given.is_null(), "attn_params must be a JSON object, got {}", given.dump());
  nlohmann::json rest = nlohmann::json::object();
  for (auto it = given.begin(); it != given.end(); ++it) {
    if (it.key() == "causal" && !has_hyperparam(info, "causal")) {
      std::vector<std::string> causal;
      for (const auto& a : attention_registry())
        if (has_hyperparam(a, "causal")) causal.push_back(a.name);
      LRA_CHECK(!it.value().is_boolean() || !it.value().get<bool>(),
                "attention '{}' has no causal mode{}{}; the variants with one: {}", info.name,
                info.no_causal.empty() ? "" : ": ", info.no_causal, fmt::join(causal, ", "));
      continue;  // causal=false is what it does anyway
    }
    rest[it.key()] = it.value();
  }
  return resolve_hyperparams(info.params, rest, fmt::format("attention '{}'", info.name), "hyperparameter");
}

template <>
std::unique_ptr<Attention<float>> make_attention<float>(const std::string& name, const AttnConfig& cfg) {
  const AttnInfo& info = find_attention(name);
  return declare_params(info, cfg, info.make_f32(cfg));
}
template <>
std::unique_ptr<Attention<double>> make_attention<double>(const std::string& name, const AttnConfig& cfg) {
  const AttnInfo& info = find_attention(name);
  return declare_params(info, cfg, info.make_f64(cfg));
}

}  // namespace lra
