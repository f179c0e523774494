// BigBird (Zaheer et al. 2020, the ITC construction LRA ran): blocks of `block` tokens; the first and
// last blocks are global; every other block sees itself, its two neighbours, the global blocks and
// `random` random blocks, drawn once per run for each layer, head and block.
#include "attn/block_sparse.h"

namespace lra {

AttnInfo bigbird_attention_info() {
  AttnInfo info;
  info.name = "bigbird";
  info.summary =
      "block-sparse: sliding (3 blocks) + global (first and last block) + random blocks, fixed per run";
  info.complexity = "time O(L (5 + r) b d), memory O(L) saved per head";
  info.params = {causal_param(),
                 {"block", 64, "tokens per block (LRA's code: 64)"},
                 {"random", 3, "random key blocks per query block (LRA's code: 3)"},
                 {"random_limit", 0,
                  "draw random blocks only among those starting before this position; 0 = anywhere (the paper). "
                  "LRA's code limits them to the first 1024 positions: random_limit=1024"}};
  return block_sparse_info(info, [](const AttnConfig& c) {
    return std::make_shared<BigBirdPattern>(c.hp.at("block").get<int>(), c.hp.at("random").get<int>(),
                                            c.hp.at("random_limit").get<int>(), c.layer);
  });
}

}  // namespace lra
