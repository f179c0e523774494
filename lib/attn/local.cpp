// Local attention: non-overlapping blocks of `block` tokens, each attending only within itself (LRA's
// "local attention", appendix B.1). Exact softmax inside a block, on the block-sparse engine.
#include "attn/block_sparse.h"

namespace lra {

AttnInfo local_attention_info() {
  AttnInfo info;
  info.name = "local";
  info.summary =
      "softmax within non-overlapping blocks of contiguous tokens (LRA's local attention; LRA's code groups "
      "tokens with stride L/block by a reshape quirk, which is not reproduced)";
  info.complexity = "time O(L b d), memory O(L) saved per head";
  info.params = {causal_param(), {"block", 50, "tokens per block (LRA's code: 50)"}};
  return block_sparse_info(info, [](const AttnConfig& c) {
    return std::make_shared<LocalPattern>(c.hp.at("block").get<int>());
  });
}

}  // namespace lra
