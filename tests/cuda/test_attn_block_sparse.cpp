// The block-sparse variants on the GPU (lib/cuda/block_sparse.cu) against the CPU engine
// (lib/attn/block_sparse.cpp), float on both: output, dQ, dK and dV by nmse on packed batches of lengths
// {1, 7, 64, 65, 130} (one-row examples, lengths off every block size), L_pad 130, for local, sparse,
// longformer (CLS global, several globals including one past the shorter examples, none) and bigbird
// (random blocks anywhere and limited), causal on and off, head sizes 16, 32 and 100, key masks (none,
// every 5th key, every key from row 3 on: rows with no visible key), attention dropout in training (the
// same Philox mask on both devices), more heads, and an empty example.
// Tolerance 1e-9 as for softmax: both sides compute exact softmax in float with different summation
// orders (the GPU's online softmax over chunks of 32 keys, its atomic sums of dK and dV), so the gap is
// float rounding (nmse ~1e-13) amplified by the cancellation in dS = P (dP - D).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gpu_attn_compare.h"

namespace lra::test {

namespace {

struct Variant {
  std::string name;
  nlohmann::json hp;
};

std::vector<Variant> variants() {
  return {{"local", {{"block", 16}}},
          {"local", {{"block", 50}}},
          {"sparse", {{"block", 16}, {"summary", 3}}},
          {"longformer", {{"window", 20}, {"global", {0}}}},
          {"longformer", {{"window", 9}, {"global", {0, 7, 40}}}},
          {"longformer", {{"window", 16}, {"global", nlohmann::json::array()}}},
          {"bigbird", {{"block", 8}, {"random", 2}}},
          {"bigbird", {{"block", 8}, {"random", 2}, {"random_limit", 32}}}};
}

AttnCase make_case(const Variant& v, bool causal, int head_dim, int mask_stride) {
  AttnCase c;
  c.name = v.name;
  c.hp = v.hp;
  c.hp["causal"] = causal;
  c.lengths = {1, 7, 64, 65, 130};
  c.L_pad = 130;
  c.head_dim = head_dim;
  c.mask_stride = mask_stride;
  return c;
}

}  // namespace

TEST_CASE("cuda block-sparse attention: every pattern, causal, head sizes, masks", "[cuda][attn][sparse]") {
  TestContext tc;
  for (const Variant& v : variants())
    for (bool causal : {false, true})
      for (int head_dim : {16, 32, 100})
        for (int mask : {0, 5, 1}) {
          INFO("head_dim " << head_dim << ", mask_stride " << mask);
          require_close(make_case(v, causal, head_dim, mask), tc);
        }
}

TEST_CASE("cuda block-sparse attention: dropout, heads and an empty example", "[cuda][attn][sparse]") {
  TestContext tc;
  for (const Variant& v : variants())
    for (bool causal : {false, true}) {
      AttnCase c = make_case(v, causal, 32, 5);
      c.dropout = 0.25f;
      c.training = true;
      INFO("dropout");
      require_close(c, tc);
      c = make_case(v, causal, 16, 0);
      c.heads = 3;
      c.lengths = {0, 70, 3, 0, 129};
      c.L_pad = 150;
      INFO("three heads, empty examples");
      require_close(c, tc);
    }
}

TEST_CASE("cuda block-sparse attention: head sizes beyond the kernel are a clear error", "[cuda][attn][sparse]") {
  TestContext tc;
  AttnConfig ac;
  ac.heads = 1;
  ac.dk = ac.dv = 129;
  ac.max_len = 64;
  ac.hp = resolve_attention_params(find_attention("local"), {});
  CHECK_THROWS_WITH(cuda::make_attention("local", ac, tc), Catch::Contains("head sizes 1 .. 128"));
}

}  // namespace lra::test
