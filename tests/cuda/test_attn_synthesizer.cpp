// GPU Synthesizer (lib/cuda/synthesizer.cu) against the CPU variant (lib/attn/synthesizer.cpp), float on
// both: the output, dQ, dK, dV and every learned weight's gradient by nmse on the same packed inputs and
// the same weights:
//   every mode (random, factorized, dense) with dot_product on and off, bidirectional and causal; lengths
//   {1, 7, 64, 65, 130} packed in one batch (a one-row example, lengths not multiples of the CPU's 64-query
//   tiles), L_pad 130 and 200 (weights with max_len rows, most unused); no key mask, every 5th key hidden, and
//   every key from row 3 on hidden (rows that see no key: output 0, LSE = +inf; causal first queries that see
//   only hidden keys); the automatic query chunk (one logit block per example here) and chunks of 50 and 1
//   query rows (blocks that end mid-example, causal blocks over fewer keys than the example has); weights at
//   their initialisation and drawn N(0, 0.5^2) (non-zero dense biases, logits dominated by the synthetic
//   part); factorized ranks 32 and 7; 3 heads; attention dropout in training (the same Philox mask on both
//   devices) and its absence in evaluation; an empty example; a long example; the weights' gradients
//   accumulating over two backward calls. The same bits on a rerun are the shared table's
//   (test_attn_table.cpp).
// Tolerance 1e-8. Both sides compute in float with different summation orders (cuBLAS against Eigen, a warp
// against a loop for the row sums, a query chunk of Tq rows against the CPU's 64-query tiles for the weights'
// gradients), so each value differs by float rounding (relative ~1e-7, nmse ~1e-13), grown by the logits'
// size (|S| of a few units with weights N(0, 0.5^2): exp turns their absolute rounding into relative error of
// P), by sums over examples and rows in the weights' gradients and by the cancellations in dS = P (dP - D);
// 1e-8 leaves three orders of magnitude above that. The dropout mask is the same bits on both sides.
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

AttnCase synth_case(const std::string& mode, bool dot, bool causal, int mask_stride, int chunk,
                    std::vector<int> lengths = kLengths, int L_pad = 130) {
  AttnCase c;
  c.name = "synthesizer";
  c.hp = {{"mode", mode}, {"dot_product", dot}, {"causal", causal}};
  c.lengths = std::move(lengths);
  c.L_pad = L_pad;
  c.head_dim = 16;
  c.mask_stride = mask_stride;
  if (chunk > 0)
    c.make_gpu = [chunk](const AttnConfig& ac, const cuda::Context& ctx) {
      return cuda::make_synthesizer_attention(ac, ctx, chunk);
    };
  return c;
}

const char* const kModes[] = {"random", "factorized", "dense"};

}  // namespace

TEST_CASE("cuda synthesizer: every mode, dot product, causal, key masks, query chunks", "[cuda][attn][synthesizer]") {
  TestContext tc;
  for (const char* mode : kModes)
    for (bool dot : {true, false})
      for (bool causal : {false, true})
        for (int mask : {0, 5, 1})
          for (int chunk : {0, 50}) {
            INFO(mode << " dot_product " << dot << " causal " << causal << " mask_stride " << mask << " chunk "
                      << chunk);
            require_close(synth_case(mode, dot, causal, mask, chunk), tc, kTol);
          }
}

TEST_CASE("cuda synthesizer: random weights, one-row chunks, ranks, heads, L_pad", "[cuda][attn][synthesizer]") {
  TestContext tc;
  for (const char* mode : kModes)
    for (bool dot : {true, false})
      for (bool causal : {false, true}) {
        INFO(mode << " dot_product " << dot << " causal " << causal);
        AttnCase c = synth_case(mode, dot, causal, 5, 0);
        c.weight_scale = 0.5;
        require_close(c, tc, kTol);
        // One query row per logit block.
        c = synth_case(mode, dot, causal, 5, 1, {1, 7, 40}, 40);
        c.weight_scale = 0.5;
        require_close(c, tc, kTol);
        // Three heads of 8, L_pad beyond the longest example (weights with 200 rows), head size 32.
        c = synth_case(mode, dot, causal, 5, 50, kLengths, 200);
        c.heads = 3;
        c.head_dim = 8;
        c.weight_scale = 0.5;
        require_close(c, tc, kTol);
        c.heads = 2;
        c.head_dim = 32;
        require_close(c, tc, kTol);
      }
  for (int k : {7, 32})
    for (int chunk : {0, 50}) {
      INFO("factorized k " << k << " chunk " << chunk);
      AttnCase c = synth_case("factorized", true, false, 5, chunk);
      c.hp["k"] = k;
      c.weight_scale = 0.5;
      require_close(c, tc, kTol);
    }
}

TEST_CASE("cuda synthesizer: attention dropout", "[cuda][attn][synthesizer]") {
  TestContext tc;
  for (const char* mode : kModes)
    for (bool causal : {false, true})
      for (int chunk : {0, 50}) {
        INFO(mode << " causal " << causal << " chunk " << chunk);
        AttnCase c = synth_case(mode, true, causal, 0, chunk);
        c.dropout = 0.1f;
        c.training = true;
        require_close(c, tc, kTol);
        c.mask_stride = 4;
        c.hp["dot_product"] = false;
        require_close(c, tc, kTol);
        // L_pad past every length: the element index (r H + h) L_pad + j is not the packed key index.
        c.lengths = {50, 20, 1};
        c.L_pad = 200;
        require_close(c, tc, kTol);
        // Evaluation: no dropout although the configuration has a rate.
        c.training = false;
        require_close(c, tc, kTol);
      }
}

TEST_CASE("cuda synthesizer: an empty example, a long example", "[cuda][attn][synthesizer]") {
  TestContext tc;
  for (const char* mode : kModes)
    for (bool causal : {false, true}) {
      INFO(mode << " causal " << causal);
      require_close(synth_case(mode, true, causal, 3, 0, {5, 0, 70, 0, 1}, 70), tc, kTol);
      require_close(synth_case(mode, false, causal, 3, 50, {5, 0, 70, 0, 1}, 70), tc, kTol);
      AttnCase c = synth_case(mode, true, causal, 7, 0, {1000}, 1000);
      c.dropout = 0.1f;
      c.training = true;
      require_close(c, tc, kTol);
      c = synth_case(mode, true, causal, 7, 300, {1000}, 1000);
      require_close(c, tc, kTol);
    }
}

TEST_CASE("cuda synthesizer: the weights' gradients accumulate over backward calls", "[cuda][attn][synthesizer]") {
  TestContext tc;
  for (const char* mode : kModes)
    for (int chunk : {0, 50}) {
      INFO(mode << " chunk " << chunk);
      AttnCase c = synth_case(mode, true, false, 5, chunk);
      c.weight_scale = 0.5;
      c.backward_passes = 2;
      require_close(c, tc, kTol);
    }
}

TEST_CASE("cuda synthesizer: the GPU declares the CPU's learned weights", "[cuda][attn][synthesizer]") {
  TestContext tc;
  AttnConfig ac;
  ac.heads = 2;
  ac.dk = ac.dv = 16;
  ac.max_len = 77;
  for (const char* mode : kModes) {
    INFO(mode);
    ac.hp = resolve_attention_params(find_attention("synthesizer"), nlohmann::json{{"mode", mode}, {"k", 5}});
    const auto gpu = cuda::make_attention("synthesizer", ac, tc)->param_specs();
    const auto cpu = make_attention<float>("synthesizer", ac)->param_specs();
    REQUIRE(gpu.size() == cpu.size());
    for (size_t i = 0; i < gpu.size(); ++i) {
      CHECK(gpu[i].name == cpu[i].name);
      CHECK(gpu[i].shape == cpu[i].shape);
    }
  }
  ac.hp = resolve_attention_params(find_attention("synthesizer"), nlohmann::json{{"mode", "sparse"}});
  CHECK_THROWS_WITH(cuda::make_attention("synthesizer", ac, tc), Catch::Contains("random, factorized or dense"));
  ac.hp = resolve_attention_params(find_attention("synthesizer"), nlohmann::json::object());
  CHECK_THROWS_WITH(cuda::make_synthesizer_attention(ac, tc, -1), Catch::Contains("query chunk"));
}

}  // namespace lra::test
