// GPU softmax attention (lib/cuda/softmax.cu) against the CPU variant (lib/attn/softmax.cpp), float on
// both: output, dQ, dK and dV within nmse 1e-9 on packed variable-length batches, every kernel head
// size (32, 64, 128, with head sizes padded up to them: 7, 16, 48, 100), causal on and off, key masks
// (including examples whose keys are all masked and causal rows that see only masked keys), attention
// dropout (the same Philox mask on both devices), a long single example and empty examples. Run-to-run
// determinism is the shared table's (test_attn_table.cpp).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "gpu_attn_compare.h"
#include "gpu_util.h"

namespace lra::test {

namespace {

AttnCase softmax_case(std::vector<int> lengths, int L_pad, int head_dim, bool causal) {
  AttnCase c;
  c.name = "softmax";
  c.hp = {{"causal", causal}};
  c.lengths = std::move(lengths);
  c.L_pad = L_pad;
  c.head_dim = head_dim;
  return c;
}

}  // namespace

TEST_CASE("cuda softmax attention: packed lengths, head sizes, causal", "[cuda][attn][softmax]") {
  TestContext tc;
  for (int dk : {7, 16, 32, 48, 64, 100, 128})
    for (bool causal : {false, true}) {
      INFO("head_dim " << dk << " causal " << causal);
      require_close(softmax_case({1, 7, 64, 65, 130}, 130, dk, causal), tc);
    }
}

TEST_CASE("cuda softmax attention: heads and an empty example", "[cuda][attn][softmax]") {
  TestContext tc;
  for (bool causal : {false, true}) {
    AttnCase c = softmax_case({0, 70, 3, 0, 129}, 150, 32, causal);
    c.heads = 3;
    INFO("causal " << causal);
    require_close(c, tc);
    c.heads = 1;
    c.head_dim = 64;
    require_close(c, tc);
  }
}

TEST_CASE("cuda softmax attention: key masks", "[cuda][attn][softmax]") {
  TestContext tc;
  for (bool causal : {false, true})
    for (int dk : {16, 64}) {
      INFO("causal " << causal << " head_dim " << dk);
      // Every third key hidden from row 3 on.
      AttnCase c = softmax_case({1, 7, 64, 65, 130}, 130, dk, causal);
      c.mask_stride = 3;
      require_close(c, tc);
      // Every key from row 3 on hidden: examples 2, 3 and 4 (rows 8 ..) have no visible key at all
      // (output 0, LSE = +inf), example 1 sees only its first two keys.
      c.mask_stride = 1;
      require_close(c, tc);
      // Every fifth key from row 3: row 8 is the first key of example 2, so with causal on its first
      // query sees only a masked key while the later queries see some.
      c.mask_stride = 5;
      require_close(c, tc);
    }
}

TEST_CASE("cuda softmax attention: attention dropout", "[cuda][attn][softmax]") {
  TestContext tc;
  for (bool causal : {false, true})
    for (int dk : {16, 64}) {
      INFO("causal " << causal << " head_dim " << dk);
      AttnCase c = softmax_case({1, 7, 64, 65, 130}, 130, dk, causal);
      c.dropout = 0.1f;
      c.training = true;
      require_close(c, tc);
      c.mask_stride = 4;
      require_close(c, tc);
      // L_pad past every length: the element index (r H + h) L_pad + j is not the packed key index.
      c.lengths = {50, 20, 1};
      c.L_pad = 200;
      require_close(c, tc);
      // Evaluation: no dropout although the configuration has a rate.
      c.training = false;
      require_close(c, tc);
    }
}

TEST_CASE("cuda softmax attention: one long example", "[cuda][attn][softmax]") {
  TestContext tc;
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    AttnCase c = softmax_case({1000}, 1000, 64, causal);
    require_close(c, tc);
    c.dropout = 0.1f;
    c.training = true;
    c.mask_stride = 7;
    require_close(c, tc);
  }
}

TEST_CASE("cuda softmax attention: store_probs has no GPU path", "[cuda][attn][softmax]") {
  TestContext tc;
  AttnConfig ac;
  ac.heads = 2;
  ac.dk = ac.dv = 16;
  ac.max_len = 64;
  ac.hp = resolve_attention_params(find_attention("softmax"), nlohmann::json{{"store_probs", true}});
  REQUIRE_THROWS_WITH(cuda::make_attention("softmax", ac, tc), Catch::Contains("store_probs"));
  ac.hp = resolve_attention_params(find_attention("softmax"), nlohmann::json::object());
  CHECK(cuda::make_attention("softmax", ac, tc) != nullptr);
}

}  // namespace lra::test
