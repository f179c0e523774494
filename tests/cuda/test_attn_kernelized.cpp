// The kernelised variants on the GPU (lib/cuda/kernelized*.cu) against the CPU's (lib/attn/kernelized.cpp
// and the feature maps), by nmse of the output and of dQ, dK, dV on the same packed inputs:
//   every variant, bidirectional and causal, lengths {1, 7, 64, 65, 130} packed in one batch (chunks of 64
//   with a remainder, one-row examples), L_pad 130, head sizes 16 and 32, no key mask, every 5th key masked,
//   and every key from row 3 on masked (examples without any real key: D = 0, no stabiliser);
//   performer with 32 features, orthogonal and i.i.d., each redraw policy; performer-relu with features 0
//   and 16; cosFormer with L_pad beyond the longest example; heads wide enough for several 64-column tiles;
//   redraws over a sequence of steps and fixed random features. Empty examples and the same bits on a
//   rerun are the shared table's (test_attn_table.cpp).
// Tolerance 1e-8 for every variant. Both sides compute in float with different summation orders, so the
// gap is float rounding (relative 1e-7 per value, nmse ~1e-13) amplified by the cancellations in dQ and dK.
// Performer's exp turns an absolute error of its argument u - |xh|^2/2 - s (|u| of a few units here, the
// dot products rounded differently on each side: ~1e-6) into the same relative error of phi, so its nmse
// stays near 1e-12 too; 1e-8 leaves four orders of magnitude for the cancellations.
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
const std::vector<int> kLengths = {1, 7, 64, 65, 130};
constexpr int kPad = 130;

AttnCase make_case(const std::string& name, nlohmann::json hp, int head_dim, int mask_stride,
                   std::vector<int> lengths = kLengths, int L_pad = kPad) {
  AttnCase c;
  c.name = name;
  c.hp = std::move(hp);
  c.lengths = std::move(lengths);
  c.L_pad = L_pad;
  c.head_dim = head_dim;
  c.mask_stride = mask_stride;
  return c;
}

// Every (causal, head size, mask) combination of one variant's hyperparameters.
void check_grid(const std::string& name, const nlohmann::json& hp, const cuda::Context& ctx) {
  for (bool causal : {false, true})
    for (int head_dim : {16, 32})
      for (int mask : {0, 5, 1}) {
        nlohmann::json h = hp;
        h["causal"] = causal;
        INFO("head_dim " << head_dim << ", mask_stride " << mask);
        require_close(make_case(name, h, head_dim, mask), ctx, kTol);
      }
}

// A CPU harness with random inputs and every 5th key from row 3 masked.
std::unique_ptr<AttnHarness<float>> harness(const std::string& name, const nlohmann::json& hp, int head_dim,
                                            const std::vector<int>& lengths, int L_pad, uint64_t seed) {
  auto h = std::make_unique<AttnHarness<float>>(name, 2, head_dim, lengths, L_pad, hp);
  h->mask.assign(static_cast<size_t>(h->rows()), 1);
  for (int64_t r = 3; r < h->rows(); r += 5) h->mask[static_cast<size_t>(r)] = 0;
  h->qkv = cast<float>(randn(h->qkv.size(), seed));
  h->dout = cast<float>(randn(h->dout.size(), seed + 1));
  h->step.seed = seed + 7;
  return h;
}

}  // namespace

TEST_CASE("gpu kernelized: linear matches the CPU", "[cuda][attn][kernelized]") {
  TestContext tc;
  check_grid("linear", nlohmann::json::object(), tc);
}

TEST_CASE("gpu kernelized: cosformer matches the CPU", "[cuda][attn][kernelized]") {
  TestContext tc;
  check_grid("cosformer", nlohmann::json::object(), tc);
  // M = L_pad beyond the longest example: the angles use the padded length, not the example's.
  for (bool causal : {false, true})
    for (int mask : {0, 5}) {
      INFO("L_pad 200, mask_stride " << mask);
      require_close(make_case("cosformer", {{"causal", causal}}, 16, mask, kLengths, 200), tc, kTol);
    }
}

TEST_CASE("gpu kernelized: performer matches the CPU", "[cuda][attn][kernelized]") {
  TestContext tc;
  for (bool orthogonal : {true, false}) {
    INFO("orthogonal " << orthogonal);
    check_grid("performer", {{"features", 32}, {"orthogonal", orthogonal}}, tc);
  }
  // The draw at step 3: 3 (step), 1 (interval:2), 0 (never).
  for (const char* redraw : {"step", "interval:2", "never"})
    for (bool causal : {false, true}) {
      INFO("redraw " << redraw);
      require_close(make_case("performer", {{"features", 32}, {"redraw", redraw}, {"causal", causal}}, 16, 5), tc,
                    kTol);
    }
}

TEST_CASE("gpu kernelized: performer-relu matches the CPU", "[cuda][attn][kernelized]") {
  TestContext tc;
  for (int features : {0, 16}) {
    INFO("features " << features);
    check_grid("performer-relu", {{"features", features}}, tc);
  }
  for (const char* redraw : {"interval:2", "never"}) {
    INFO("redraw " << redraw);
    require_close(make_case("performer-relu", {{"features", 16}, {"orthogonal", false}, {"redraw", redraw}}, 32, 5),
                  tc, kTol);
  }
}

TEST_CASE("gpu kernelized: wide heads and many features (several column tiles)", "[cuda][attn][kernelized]") {
  TestContext tc;
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    require_close(make_case("linear", {{"causal", causal}}, 80, 5), tc, kTol);      // m = 80, dv + 1 = 81
    require_close(make_case("cosformer", {{"causal", causal}}, 48, 5), tc, kTol);   // m = 96
    require_close(make_case("performer", {{"causal", causal}, {"features", 160}}, 16, 5), tc, kTol);
    require_close(make_case("performer-relu", {{"causal", causal}, {"features", 96}}, 32, 5), tc, kTol);
  }
}

TEST_CASE("gpu kernelized: random features follow the redraw policy over steps", "[cuda][attn][kernelized]") {
  TestContext tc;
  for (const char* redraw : {"step", "interval:2", "never"})
    for (const char* name : {"performer", "performer-relu"}) {
      INFO(name << " redraw " << redraw);
      const nlohmann::json hp = {{"features", 32}, {"redraw", redraw}, {"causal", true}};
      auto cpu = harness(name, hp, 16, {7, 65}, 65, 11);
      GpuTwin gpu(*cpu, name, hp, tc);
      std::vector<std::vector<float>> outs;
      for (int64_t step : {0, 1, 2, 3, 2, 5}) {
        INFO("step " << step);
        cpu->step.step = step;
        cpu->forward();
        outs.push_back(gpu.forward(cpu->step));
        CHECK(nmse(outs.back(), cpu->out) < kTol);
      }
      cpu->backward();
      const auto d = gpu.backward(cpu->step);
      CHECK(nmse(d, cpu->dqkv) < kTol);
      // Steps 0 and 1 share a draw only under interval:2 and never; never keeps one draw throughout.
      CHECK(same_bits(outs[0], outs[1]) == (std::string(redraw) != "step"));
      CHECK(same_bits(outs[0], outs[5]) == (std::string(redraw) == "never"));
    }
}

TEST_CASE("gpu kernelized: fixed random features", "[cuda][attn][kernelized]") {
  TestContext tc;
  for (const char* name : {"performer", "performer-relu"}) {
    INFO(name);
    const nlohmann::json hp = {{"features", 24}};
    auto cpu = harness(name, hp, 16, {7, 65}, 65, 21);
    GpuTwin gpu(*cpu, name, hp, tc);
    const auto w = randn(24 * 16, 99);
    cpu->attn->set_random_features(w);
    gpu.attn->set_random_features(w);
    for (int64_t step : {0, 4}) {  // fixed features ignore the redraw policy
      cpu->step.step = step;
      cpu->forward();
      CHECK(nmse(gpu.forward(cpu->step), cpu->out) < kTol);
    }
    cpu->backward();
    CHECK(nmse(gpu.backward(cpu->step), cpu->dqkv) < kTol);
    CHECK_THROWS_AS(gpu.attn->set_random_features(std::vector<double>(5, 1.0)), lra::Error);
  }
  for (const char* name : {"linear", "cosformer", "performer-relu"}) {
    INFO(name);
    auto a = small_gpu_attention(name, tc);
    CHECK_THROWS_AS(a->set_random_features(std::vector<double>(16 * 16, 1.0)), lra::Error);
  }
}

}  // namespace lra::test
