// The Sparse Transformer's fixed pattern (Child et al. 2019, "fixed" attention; LRA's Fixed1Pattern +
// Fixed2Pattern): blocks of `block` tokens; a query sees its whole block and the last `summary` tokens
// of every other block. Computed block-sparse: a block gathers its own keys and the summary columns.
#include "attn/block_sparse.h"

namespace lra {

AttnInfo sparse_attention_info() {
  AttnInfo info;
  info.name = "sparse";
  info.summary =
      "Sparse Transformer fixed pattern: own block + the last `summary` tokens of every block. Bidirectional "
      "by default; LRA's code ANDs it with a lower-triangular mask: causal=true reproduces that (with CLS "
      "pooling the classifier then sees the CLS token alone)";
  info.complexity = "time O(L (b + c L / b) d), memory O(L) saved per head";
  info.params = {causal_param(),
                 {"block", 50, "tokens per block (LRA's code: 50)"},
                 {"summary", 10, "summary tokens at the end of each block, c (LRA's code: 10)"}};
  return block_sparse_info(info, [](const AttnConfig& c) {
    return std::make_shared<FixedPattern>(c.hp.at("block").get<int>(), c.hp.at("summary").get<int>(),
                                          c.hp.at("causal").get<bool>());
  });
}

}  // namespace lra
