// Linformer: finite-difference gradients of q, k, v and the projection E (double, masked keys, examples of
// different lengths, with and without attention dropout), equality with the formula written plainly,
// padded batch against per-example runs (E's gradient summed), masked keys, float against double, the
// hyperparameter errors, and the row-softmax maths the GPU shares (lib/attn/row_softmax.h).
#include <catch2/catch.hpp>
#include <cmath>

#include "attn/row_softmax.h"
#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kTol = 1e-6;

// The published formula for (example b, head h), written plainly: K' = E_n^T K, V' = E_n^T V with hidden
// keys' rows of K and V zeroed, O = softmax(Q K'^T / sqrt(d)) V'.
std::vector<double> linformer_reference(AttnHarness<double>& a, int b, int h, int k) {
  const int64_t r0 = a.offsets[b];
  const int n = a.offsets[b + 1] - a.offsets[b], d = a.dk;
  const auto& E = a.params.values[0];
  std::vector<double> kp(static_cast<size_t>(k) * d, 0.0), vp(kp.size(), 0.0), o(static_cast<size_t>(n) * d, 0.0);
  for (int j = 0; j < n; ++j) {
    if (!a.mask.empty() && a.mask[r0 + j] == 0) continue;
    for (int r = 0; r < k; ++r)
      for (int c = 0; c < d; ++c) {
        kp[r * d + c] += E[j * k + r] * a.at(1, r0 + j, h, c);
        vp[r * d + c] += E[j * k + r] * a.at(2, r0 + j, h, c);
      }
  }
  for (int i = 0; i < n; ++i) {
    std::vector<double> s(k, 0.0);
    double m = -INFINITY, z = 0;
    for (int r = 0; r < k; ++r) {
      for (int c = 0; c < d; ++c) s[r] += a.at(0, r0 + i, h, c) * kp[r * d + c] / std::sqrt(d);
      m = std::max(m, s[r]);
    }
    for (int r = 0; r < k; ++r) z += std::exp(s[r] - m);
    for (int r = 0; r < k; ++r)
      for (int c = 0; c < d; ++c) o[i * d + c] += std::exp(s[r] - m) / z * vp[r * d + c];
  }
  return o;
}

}  // namespace

TEST_CASE("linformer gradients match finite differences", "[linformer]") {
  // Lengths not multiples of anything, a length-1 example, masked keys; k below and above some lengths.
  for (int k : {16, 7}) {
    INFO("k = " << k);
    AttnHarness<double> a("linformer", 2, 4, {70, 5, 1, 130}, 130, {{"k", k}});
    mask_every(a, 2, 7);
    CHECK(attention_fd_error(a, 10) < kTol);
  }
  SECTION("with attention dropout (regenerated in the backward)") {
    AttnHarness<double> a("linformer", 2, 4, {9, 33, 1}, 33, {{"k", 5}}, 0.25f);
    mask_every(a, 1, 4);
    a.step = AttnStep{true, 1234, 5, 0};
    CHECK(attention_fd_error(a, 11) < kTol);
  }
  SECTION("without a key mask") {
    AttnHarness<double> a("linformer", 3, 2, {17, 1, 40}, 40, {{"k", 6}});
    CHECK(attention_fd_error(a, 12) < kTol);
  }
}

TEST_CASE("linformer equals its formula written plainly", "[linformer]") {
  for (bool masked : {false, true}) {
    AttnHarness<double> a("linformer", 3, 4, {100, 17, 1, 64}, 100, {{"k", 9}});
    if (masked) mask_every(a, 3, 5);
    a.qkv = randn(a.qkv.size(), 13, 1.5);
    a.forward();
    double worst = 0;
    for (int b = 0; b < 4; ++b)
      for (int h = 0; h < a.H; ++h) {
        const auto o = linformer_reference(a, b, h, 9);
        for (int i = 0; i < a.offsets[b + 1] - a.offsets[b]; ++i)
          for (int c = 0; c < a.dk; ++c)
            worst = std::max(worst, std::fabs(o[i * a.dk + c] - a.out_at(a.offsets[b] + i, h, c)));
      }
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("linformer: a padded batch equals per-example runs", "[linformer]") {
  // Example 0 is 30 real tokens padded to 40, example 1 has 25; each alone uses the first rows of the
  // same E, and E's gradient of the batch is the sum of the examples'.
  const int k = 8;
  AttnHarness<double> full("linformer", 2, 4, {40, 25}, 40, {{"k", k}});
  full.qkv = randn(full.qkv.size(), 15);
  full.mask.assign(65, 1);
  for (int r = 30; r < 40; ++r) full.mask[r] = 0;
  full.dout = randn(full.out.size(), 16);
  for (int r = 30; r < 40; ++r)
    for (int c = 0; c < full.Q; ++c) full.dout[r * full.Q + c] = 0.0;
  full.forward();
  full.backward();
  std::vector<double> dE_sum(full.params.grads[0].size(), 0.0);
  const int starts[] = {0, 40}, lengths[] = {30, 25};
  for (int e = 0; e < 2; ++e) {
    AttnHarness<double> one("linformer", 2, 4, {lengths[e]}, 40, {{"k", k}});
    std::copy(full.params.values[0].begin(), full.params.values[0].begin() + lengths[e] * k,
              one.params.values[0].begin());
    const int64_t s0 = starts[e];
    for (size_t i = 0; i < one.qkv.size(); ++i) one.qkv[i] = full.qkv[s0 * 3 * full.Q + i];
    for (size_t i = 0; i < one.dout.size(); ++i) one.dout[i] = full.dout[s0 * full.Q + i];
    one.forward();
    one.backward();
    double worst = 0;
    for (size_t i = 0; i < one.out.size(); ++i)
      worst = std::max(worst, std::fabs(one.out[i] - full.out[s0 * full.Q + i]));
    for (size_t i = 0; i < one.dqkv.size(); ++i)
      worst = std::max(worst, std::fabs(one.dqkv[i] - full.dqkv[s0 * 3 * full.Q + i]));
    CHECK(worst < 1e-12);
    for (size_t i = 0; i < one.params.grads[0].size(); ++i) dE_sum[i] += one.params.grads[0][i];
  }
  CHECK(max_abs_diff(dE_sum, full.params.grads[0]) < 1e-12);
  // The padded keys and values, and their rows of E, get no gradient.
  for (int r = 30; r < 40; ++r) {
    for (int c = full.Q; c < 3 * full.Q; ++c) CHECK(full.dqkv[r * 3 * full.Q + c] == 0.0);
    for (int c = 0; c < k; ++c) CHECK(full.params.grads[0][r * k + c] == 0.0);
  }
}

TEST_CASE("linformer: masked keys contribute nothing, an all-masked example gives zeros", "[linformer]") {
  AttnHarness<double> a("linformer", 2, 4, {30, 20, 6}, 32, {{"k", 5}});
  a.mask.assign(56, 1);
  for (int r : {3, 17, 29, 35, 49}) a.mask[r] = 0;
  for (int r = 50; r < 56; ++r) a.mask[r] = 0;
  a.qkv = randn(a.qkv.size(), 22);
  a.dout = randn(a.out.size(), 23);
  a.forward();
  a.backward();
  const auto before = a.out;
  const auto grads_before = a.dqkv;
  for (int r : {3, 17, 29, 35, 49, 50, 53})
    for (int c = a.Q; c < 3 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] += 5.0;
  a.forward();
  a.backward();
  CHECK(max_abs_diff(a.out, before) < 1e-12);
  CHECK(max_abs_diff(a.dqkv, grads_before) < 1e-12);
  for (double x : a.dqkv) CHECK(std::isfinite(x));
  for (int64_t r = 50; r < 56; ++r) {
    for (int c = 0; c < a.Q; ++c) CHECK(a.out[r * a.Q + c] == 0.0);
    for (int c = 0; c < 3 * a.Q; ++c) CHECK(a.dqkv[r * 3 * a.Q + c] == 0.0);
  }
}

TEST_CASE("linformer: E's gradient accumulates", "[linformer]") {
  AttnHarness<double> a("linformer", 2, 4, {12, 7}, 12, {{"k", 4}});
  a.qkv = randn(a.qkv.size(), 30);
  a.dout = randn(a.out.size(), 31);
  a.forward();
  a.backward();
  const auto once = a.params.grads[0];
  AttnGrads<double> g{a.dout.data(), a.dqkv.data(), a.dqkv.data() + a.Q, a.dqkv.data() + 2 * a.Q};
  a.attn->backward(a.seq(), a.io(), g, a.saved.data(), a.scratch.data(), a.step);
  for (size_t i = 0; i < once.size(); ++i) CHECK(a.params.grads[0][i] == Approx(2 * once[i]).margin(1e-14));
}

TEST_CASE("linformer: float agrees with double", "[linformer]") {
  AttnHarness<double> d("linformer", 2, 8, {200, 77}, 200);
  AttnHarness<float> f("linformer", 2, 8, {200, 77}, 200);
  d.mask.assign(277, 1);
  for (int r = 5; r < 277; r += 9) d.mask[r] = 0;
  f.mask = d.mask;
  d.qkv = randn(d.qkv.size(), 23);
  f.qkv = cast<float>(d.qkv);
  d.dout = randn(d.out.size(), 24);
  f.dout = cast<float>(d.dout);
  d.forward();
  f.forward();
  d.backward();
  f.backward();
  double worst = 0, worst_grad = 0, worst_e = 0;
  for (size_t i = 0; i < d.out.size(); ++i) worst = std::max(worst, std::fabs(d.out[i] - f.out[i]));
  for (size_t i = 0; i < d.dqkv.size(); ++i) worst_grad = std::max(worst_grad, std::fabs(d.dqkv[i] - f.dqkv[i]));
  for (size_t i = 0; i < d.params.grads[0].size(); ++i)
    worst_e = std::max(worst_e, std::fabs(d.params.grads[0][i] - f.params.grads[0][i]));
  CHECK(worst < 1e-4 * std::max(1.0, max_abs(d.out)));
  CHECK(worst_grad < 1e-4 * std::max(1.0, max_abs(d.dqkv)));
  CHECK(worst_e < 1e-4 * std::max(1.0, max_abs(d.params.grads[0])));
}

TEST_CASE("linformer: bad hyperparameters and causal are clear errors", "[linformer]") {
  auto make = [](nlohmann::json hp) { AttnHarness<double> a("linformer", 1, 4, {4}, 4, hp); };
  CHECK_THROWS_WITH(make({{"k", 0}}), Catch::Contains("k (the projected length) must be a positive integer, got 0"));
  CHECK_THROWS_WITH(make({{"k", 2.5}}), Catch::Contains("must be a positive integer, got 2.5"));
  CHECK_THROWS_WITH(make({{"causal", true}}), Catch::Contains("linformer' has no causal mode"));
  CHECK_THROWS_WITH(make({{"rank", 3}}), Catch::Contains("has no hyperparameter 'rank'"));
  AttnHarness<double> a("linformer", 2, 4, {5}, 5, {{"k", 3}});
  const auto specs = a.attn->param_specs();
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].name == "proj");
  CHECK(specs[0].shape == std::vector<int>{5, 3});
}

TEST_CASE("row softmax maths: the GPU's dropout words, factors and logit gradients", "[synthesizer][linformer]") {
  // philox_word (one element, as the GPU kernels draw it) is philox_fill's word (the CPU's rows), at any
  // start within a Philox block and across the 32-bit counter boundary.
  for (uint64_t base : {uint64_t{0}, uint64_t{1}, uint64_t{3}, uint64_t{1000003}, (uint64_t{1} << 34) - 5}) {
    std::vector<uint32_t> words(37);
    philox_fill(77, 12345, base, 37, words.data());
    for (int j = 0; j < 37; ++j) CHECK(philox_word(77, 12345, base + static_cast<uint64_t>(j)) == words[j]);
  }
  // The factor keeps about 1 - p of the elements at 1/(1-p), drops the rest to 0; p = 0 keeps everything.
  const float p = 0.25f, scale = 1.0f / (1.0f - p);
  int kept = 0, other = 0, dropped_at_zero = 0;
  for (uint64_t e = 0; e < 40000; ++e) {
    const float z = dropout_factor(philox_word(5, 6, e), dropout_threshold(p), scale);
    kept += z == scale;
    other += z != scale && z != 0.0f;
    dropped_at_zero += dropout_factor(philox_word(5, 6, e), dropout_threshold(0.0f), 1.0f) != 1.0f;
  }
  CHECK(other == 0);
  CHECK(dropped_at_zero == 0);
  CHECK(std::abs(kept / 40000.0 - 0.75) < 0.01);
  // dS = P (dP z - D).
  CHECK(softmax_dlogit(0.25, 2.0, 1.0, 0.5) == 0.25 * (2.0 - 0.5));
  CHECK(softmax_dlogit(0.25f, 2.0f, 0.0f, 0.5f) == -0.125f);
}
