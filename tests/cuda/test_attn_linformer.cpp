// GPU Linformer (lib/cuda/linformer.cu) against the CPU variant (lib/attn/linformer.cpp), float on both:
// the output, dQ, dK, dV and the projection's gradient dE by nmse on the same packed inputs and the same E:
//   lengths {1, 7, 64, 65, 130} packed in one batch (a one-row example, lengths not multiples of anything),
//   L_pad 130 and 200 (E has max_len = L_pad rows, most unused), k = 16 (LRA's), 7, and 200 (more projected
//   keys than any example has rows), head sizes 16 and 32, 3 heads, no key mask, every 5th key hidden and
//   every key from row 3 on hidden (examples whose keys are all hidden: K' = V' = 0, output 0), attention
//   dropout in training (the same Philox mask on both devices) and its absence in evaluation, and dE
//   accumulating over two backward calls. Empty examples and the same bits on a rerun are the shared
//   table's (test_attn_table.cpp).
// Tolerance 1e-8. Both sides compute in float with different summation orders (cuBLAS against Eigen, a warp
// against a loop for the row sums), so each value differs by float rounding (relative ~1e-7, nmse ~1e-13),
// grown by the sums of n rows in K' = E_n^T K and of examples x heads x rows in dE (a factor of at most
// ~10^3 on the squared error for these sizes) and by the cancellations in dS = P (dP - D); 1e-8 leaves
// two orders of magnitude above that. The dropout mask is the same bits on both sides, so it adds nothing.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "gpu_attn_compare.h"
#include "gpu_util.h"

namespace lra::test {

namespace {

constexpr double kTol = 1e-8;
const std::vector<int> kLengths = {1, 7, 64, 65, 130};

AttnCase linformer_case(int k, int head_dim, int mask_stride, std::vector<int> lengths = kLengths, int L_pad = 130) {
  AttnCase c;
  c.name = "linformer";
  c.hp = {{"k", k}};
  c.lengths = std::move(lengths);
  c.L_pad = L_pad;
  c.head_dim = head_dim;
  c.mask_stride = mask_stride;
  return c;
}

}  // namespace

TEST_CASE("cuda linformer: packed lengths, k, head sizes, key masks", "[cuda][attn][linformer]") {
  TestContext tc;
  for (int k : {16, 7, 200})
    for (int head_dim : {16, 32})
      for (int mask : {0, 5, 1}) {
        INFO("k " << k << " head_dim " << head_dim << " mask_stride " << mask);
        require_close(linformer_case(k, head_dim, mask), tc, kTol);
      }
}

TEST_CASE("cuda linformer: L_pad beyond the longest example, three heads", "[cuda][attn][linformer]") {
  TestContext tc;
  for (int mask : {0, 5}) {
    INFO("mask_stride " << mask);
    AttnCase c = linformer_case(16, 16, mask, kLengths, 200);
    require_close(c, tc, kTol);
    c.heads = 3;
    c.head_dim = 8;
    require_close(c, tc, kTol);
  }
}

TEST_CASE("cuda linformer: attention dropout", "[cuda][attn][linformer]") {
  TestContext tc;
  for (int mask : {0, 5, 1}) {
    INFO("mask_stride " << mask);
    AttnCase c = linformer_case(16, 16, mask);
    c.dropout = 0.1f;
    c.training = true;
    require_close(c, tc, kTol);
    // k not a multiple of 4: a row's dropout words start mid-way through a Philox block.
    c.hp = {{"k", 7}};
    c.lengths = {50, 20, 1};
    c.L_pad = 200;
    require_close(c, tc, kTol);
    // Evaluation: no dropout although the configuration has a rate.
    c.training = false;
    require_close(c, tc, kTol);
  }
}

TEST_CASE("cuda linformer: dE accumulates over backward calls", "[cuda][attn][linformer]") {
  TestContext tc;
  AttnCase c = linformer_case(16, 16, 5);
  c.backward_passes = 2;
  require_close(c, tc, kTol);
}

TEST_CASE("cuda linformer: the GPU declares the CPU's learned weight", "[cuda][attn][linformer]") {
  TestContext tc;
  AttnConfig ac;
  ac.heads = 2;
  ac.dk = ac.dv = 16;
  ac.max_len = 77;
  ac.hp = resolve_attention_params(find_attention("linformer"), nlohmann::json{{"k", 9}});
  const auto specs = cuda::make_attention("linformer", ac, tc)->param_specs();
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].name == "proj");
  CHECK(specs[0].shape == std::vector<int>{77, 9});
  ac.hp["k"] = 0;
  CHECK_THROWS_WITH(cuda::make_attention("linformer", ac, tc), Catch::Contains("positive integer"));
}

}  // namespace lra::test
