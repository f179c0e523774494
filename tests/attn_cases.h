// The attention test table both test executables share: every registered variant under settings that
// exercise its code paths, bidirectional and causal. tests/test_attention.cpp runs it on the CPU against
// finite differences and explicit references; tests/cuda/test_attn_table.cpp runs it on the GPU against
// the CPU. A registered variant missing from settings() runs with its defaults, so a new variant joins
// both tables by registering.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/attention.h"

namespace lra::test {

struct Variant {
  std::string name;
  nlohmann::json hp;
  std::string label() const { return name + " " + hp.dump(); }
};

// Settings beyond a variant's defaults (performer-relu with and without a projection; block-sparse
// patterns with blocks small enough to cross several; small shapes for the rest).
inline const std::map<std::string, std::vector<nlohmann::json>>& attn_settings() {
  static const std::map<std::string, std::vector<nlohmann::json>> s = {
      {"softmax", {{}, {{"store_probs", true}}}},
      {"performer", {{{"features", 16}, {"redraw", "never"}}}},
      {"performer-relu", {{}, {{"features", 12}, {"redraw", "never"}}}},
      {"local", {{{"block", 16}}}},
      {"sparse", {{{"block", 16}, {"summary", 3}}}},
      {"longformer", {{{"window", 20}}}},
      {"bigbird", {{{"block", 8}, {"random", 2}}}},
      {"synthesizer", {{}, {{"mode", "factorized"}, {"k", 5}}, {{"mode", "dense"}, {"dot_product", false}}}},
      {"reformer", {{{"buckets", 4}, {"chunk", 8}, {"hashes", 2}}}},
      {"linformer", {{{"k", 6}}}},
      {"nystromformer", {{{"landmarks", 8}, {"conv_kernel", 5}}}},
      {"sinkhorn", {{{"block", 8}}}}};
  return s;
}

// Every registered variant in registry order, under each of its settings, bidirectional or causal:
// variants without a causal mode appear only in the bidirectional list.
inline std::vector<Variant> attn_variants(bool causal) {
  std::vector<Variant> v;
  for (const AttnInfo& info : attention_registry()) {
    const bool has_causal = has_hyperparam(info, "causal");
    if (causal && !has_causal) continue;
    const auto it = attn_settings().find(info.name);
    for (nlohmann::json hp :
         it != attn_settings().end() ? it->second : std::vector<nlohmann::json>{nlohmann::json::object()}) {
      if (hp.is_null()) hp = nlohmann::json::object();
      if (has_causal) hp["causal"] = causal;
      v.push_back({info.name, hp});
    }
  }
  return v;
}

inline std::vector<Variant> all_attn_variants() {
  auto v = attn_variants(false);
  for (auto& x : attn_variants(true)) v.push_back(x);
  return v;
}

}  // namespace lra::test
