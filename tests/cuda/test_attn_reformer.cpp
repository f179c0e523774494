// GPU Reformer LSH attention (lib/cuda/reformer.cu) against the CPU variant (lib/attn/reformer.cpp), float on
// both, by nmse of the output and of dQ, dK (zero on both) and dV on the same packed inputs and step:
//   the CPU tests' settings (defaults; causal; LRA's code: no self mask, raw keys, sqrt(dk) logits; 3 rounds
//   of 4 buckets with 2 chunks before, wrapping across rounds; a fixed chunk of 7 with no chunk before;
//   causal with 2 rounds of chunks of 5) plus more chunks before than there are chunks, one chunk holding
//   every key, 2 buckets (chunks of about m / 2: several 32-entry tiles per chunk), for each: lengths
//   {1, 7, 37, 64, 65, 130} packed in one batch (a one-row example alone with itself, lengths no multiple of
//   any chunk or tile), L_pad 150 beyond the longest, head sizes 16 and 32 (5 and 16 for LRA's code, see
//   below), no key mask, every 5th key hidden, and every key from row 3 on hidden (examples with no visible
//   key, and one with 2 visible keys whose hidden queries crowd the last chunk); chunks longer than a 32-row
//   tile and than 128 queries; odd and wide heads (5, 64); rotations that follow
//   (seed, step) across calls, including redraws into a reused host slot; the same bits on a rerun; dK = 0;
//   the settings the GPU rejects. Empty examples are the shared table's (test_attn_table.cpp).
// Reformer has no attention dropout and no learned weights, so there is no dropout mask or dparams to compare.
// Tolerance 1e-8: both sides hash in double from the same float queries and the same rotations (drawn on the
// host by the same function), so the buckets agree unless two rotated values tie within ~1e-16 relative (never
// with these random inputs); the rest is float rounding in different summation orders (~1e-7 relative per
// value), amplified where logits are large and by the cancellation in dS = P (dP - D). The CPU's float
// against its own double on this grid measures that error: worst nmse 1.4e-13 over the settings with unit
// keys or 1/sqrt(dk), 4e-10 (dQ, head size 16) for LRA's code. With LRA's code and head size 32 or more, raw
// keys scaled by sqrt(dk) give logits of ~200 and every softmax is one-hot in float: the true dQ is ~1e-40
// and both sides' dQ is pure rounding noise of dS = 1 (dP - D) (float against double: nmse 1e2), so that
// setting runs with head sizes 5 and 16 only. 1e-8 leaves 25x over the worst measured case and five orders
// of magnitude over the rest.
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "gpu_attn_compare.h"
#include "gpu_twin.h"

namespace lra::test {

namespace {

constexpr double kTol = 1e-8;
const std::vector<int> kLengths = {1, 7, 37, 64, 65, 130};
constexpr int kPad = 150;

// The CPU tests' settings and three more: before > chunks, one chunk of every key, 2 buckets.
const nlohmann::json kLraCode = {{"self_mask", false}, {"norm_keys", false}, {"code_logit_scale", true}};
std::vector<nlohmann::json> settings() {
  return {nlohmann::json::object(),
          {{"causal", true}},
          kLraCode,
          {{"hashes", 3}, {"buckets", 4}, {"chunks_before", 2}},
          {{"chunk", 7}, {"chunks_before", 0}},
          {{"causal", true}, {"hashes", 2}, {"chunk", 5}, {"buckets", 6}},
          {{"hashes", 2}, {"chunks_before", 50}, {"causal", true}},
          {{"chunk", 1000}, {"hashes", 2}},
          {{"buckets", 2}, {"self_mask", false}}};
}

AttnCase make_case(nlohmann::json hp, int head_dim, int mask_stride, std::vector<int> lengths = kLengths,
                   int L_pad = kPad) {
  AttnCase c;
  c.name = "reformer";
  c.hp = std::move(hp);
  c.lengths = std::move(lengths);
  c.L_pad = L_pad;
  c.head_dim = head_dim;
  c.mask_stride = mask_stride;
  return c;
}

// A CPU harness with random inputs and every 5th key from row 3 hidden.
std::unique_ptr<AttnHarness<float>> harness(const nlohmann::json& hp, int head_dim, const std::vector<int>& lengths,
                                            int L_pad, uint64_t seed) {
  auto h = std::make_unique<AttnHarness<float>>("reformer", 2, head_dim, lengths, L_pad, hp);
  h->mask.assign(static_cast<size_t>(h->rows()), 1);
  for (int64_t r = 3; r < h->rows(); r += 5) h->mask[static_cast<size_t>(r)] = 0;
  h->qkv = cast<float>(randn(h->qkv.size(), seed));
  h->dout = cast<float>(randn(h->dout.size(), seed + 1));
  h->step = AttnStep{true, seed + 7, 0, 3};
  return h;
}

}  // namespace

TEST_CASE("gpu reformer matches the CPU over settings, head sizes and key masks", "[cuda][attn][reformer]") {
  TestContext tc;
  for (const auto& hp : settings())
    for (int head_dim : hp == kLraCode ? std::vector<int>{5, 16} : std::vector<int>{16, 32})
      for (int mask : {0, 5, 1}) {
        INFO("head_dim " << head_dim << ", mask_stride " << mask);
        require_close(make_case(hp, head_dim, mask), tc, kTol);
      }
}

TEST_CASE("gpu reformer: long chunks, odd and wide heads, many heads", "[cuda][attn][reformer]") {
  TestContext tc;
  // Chunks of 150 (several query and key tiles, more than the CPU's 128 queries at once), as the CPU test.
  for (bool causal : {false, true}) {
    INFO("chunk 150, causal " << causal);
    require_close(make_case({{"causal", causal}, {"hashes", 2}, {"buckets", 4}, {"chunk", 150}}, 16, 9, {330, 20},
                            330),
                  tc, kTol);
  }
  for (int head_dim : {5, 64})
    for (bool causal : {false, true}) {
      INFO("head_dim " << head_dim << ", causal " << causal);
      require_close(make_case({{"causal", causal}, {"hashes", 2}}, head_dim, 5), tc, kTol);
    }
  AttnCase c = make_case({{"hashes", 2}, {"buckets", 8}}, 16, 5);
  c.heads = 5;
  require_close(c, tc, kTol);
}

TEST_CASE("gpu reformer: rotations follow (seed, step) across calls", "[cuda][attn][reformer]") {
  TestContext tc;
  const nlohmann::json hp = {{"hashes", 2}, {"buckets", 6}};
  auto cpu = harness(hp, 16, {7, 65, 40}, 65, 11);
  GpuTwin gpu(*cpu, "reformer", hp, tc);
  // Four draws pass through the three host slots, so steps 0 and 1 are redrawn into reused slots.
  std::vector<std::vector<float>> outs;
  for (int64_t step : {0, 1, 2, 1, 3, 0, 1}) {
    INFO("step " << step);
    cpu->step.step = step;
    cpu->forward();
    outs.push_back(gpu.forward(cpu->step));
    CHECK(nmse(outs.back(), cpu->out) < kTol);
  }
  cpu->backward();
  const auto d = gpu.backward(cpu->step);
  CHECK(nmse(d, cpu->dqkv) < kTol);
  CHECK(same_bits(outs[1], outs[3]));
  CHECK(same_bits(outs[0], outs[5]));
  CHECK(same_bits(outs[1], outs[6]));
  CHECK(!same_bits(outs[0], outs[1]));
  // Another seed, the same step: other rotations.
  cpu->step.seed += 1;
  cpu->forward();
  const auto other = gpu.forward(cpu->step);
  CHECK(nmse(other, cpu->out) < kTol);
  CHECK(!same_bits(other, outs[6]));
}

TEST_CASE("gpu reformer: the same bits on a rerun, and dK is zero", "[cuda][attn][reformer]") {
  TestContext tc;
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    auto cpu = harness(hp, 32, kLengths, kPad, 31);
    GpuTwin gpu(*cpu, "reformer", hp, tc);
    const auto o1 = gpu.forward(cpu->step), d1 = gpu.backward(cpu->step);
    const auto o2 = gpu.forward(cpu->step), d2 = gpu.backward(cpu->step);
    CHECK(same_bits(o1, o2));
    CHECK(same_bits(d1, d2));
    bool dk_zero = true;
    for (int64_t r = 0; r < cpu->rows(); ++r)
      for (int j = 0; j < cpu->Q; ++j) dk_zero = dk_zero && d1[static_cast<size_t>(r * 3 * cpu->Q + cpu->Q + j)] == 0.0f;
    CHECK(dk_zero);
  }
}

TEST_CASE("gpu reformer rejects what it cannot run", "[cuda][attn][reformer]") {
  TestContext tc;
  auto make = [&](nlohmann::json hp, int head_dim) {
    AttnConfig ac;
    ac.heads = 2;
    ac.dk = ac.dv = head_dim;
    ac.max_len = 64;
    ac.hp = resolve_attention_params(find_attention("reformer"), hp);
    return cuda::make_attention("reformer", ac, tc);
  };
  CHECK_THROWS_WITH(make({{"buckets", 8192}}, 16), Catch::Contains("at most 4096 buckets"));
  CHECK_NOTHROW(make({{"buckets", 4096}}, 16));
  CHECK_THROWS_WITH(make(nlohmann::json::object(), 4096), Catch::Contains("bytes of shared memory per block"));
  // The CPU's own checks run first, with its messages.
  CHECK_THROWS_WITH(make({{"buckets", 3}}, 16), Catch::Contains("buckets must be even"));
}

}  // namespace lra::test
