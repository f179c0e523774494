// Longformer (Beltagy et al. 2020): each token sees a sliding window of `window` neighbours (window/2
// on each side); global positions (the CLS token by default) see every token and every token sees them.
// Computed block-sparse: a block of queries gathers its window band and the global columns.
#include "attn/block_sparse.h"

namespace lra {

AttnInfo longformer_attention_info() {
  AttnInfo info;
  info.name = "longformer";
  info.summary =
      "sliding window + global tokens. Global = [0] (the CLS position, as the Longformer paper does for "
      "classification); LRA's code has no global tokens (global_mask None): global=[] reproduces it";
  info.complexity = "time O(L w d), memory O(L) saved per head";
  info.params = {causal_param(),
                 {"window", 512, "window width w: keys within w/2 on each side (LRA's code: 512)"},
                 {"global", nlohmann::json::array({0}), "positions with global attention, a JSON list"}};
  return block_sparse_info(info, [](const AttnConfig& c) {
    const auto& g = c.hp.at("global");
    LRA_CHECK(g.is_array(), "longformer global must be a JSON list of positions, e.g. [0], got {}", g.dump());
    std::vector<int> global;
    for (const auto& x : g) {
      LRA_CHECK(x.is_number_integer(), "longformer global must list integer positions, got {}", g.dump());
      global.push_back(x.get<int>());
    }
    return std::make_shared<LongformerPattern>(c.hp.at("window").get<int>(), global);
  });
}

}  // namespace lra
