// Synthesizer, every mode with and without the dot product, bidirectional and causal: finite-difference
// gradients of q, k, v and of every learned weight (double, masked keys, examples of different lengths
// crossing the 64-query tiles, with and without attention dropout), equality with the formula written
// plainly, padded batch against per-example runs (weight gradients summed), masked keys, causality,
// float against double, and the hyperparameter errors.
#include <fmt/ranges.h>

#include <catch2/catch.hpp>
#include <cmath>

#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kTol = 1e-6;

// Every distinct code path: the three modes, with and without the dot product, bidirectional or causal.
std::vector<nlohmann::json> settings() {
  std::vector<nlohmann::json> v;
  for (const char* mode : {"random", "factorized", "dense"})
    for (bool dot : {true, false})
      for (bool causal : {false, true})
        v.push_back({{"mode", mode}, {"dot_product", dot}, {"causal", causal}, {"k", 5}});
  return v;
}

// Learned weights drawn at scale 0.7, then qkv and every weight by central differences.
double fd_error(AttnHarness<double>& a, uint64_t seed) {
  randomise_weights(a, seed + 100, 0.7);
  return attention_fd_error(a, seed);
}

// The published formula for (example b, head h), written plainly: logits_ij = syn_ij (+ q_i . k_j /
// sqrt(d)) over real keys (j <= i when causal), softmax, weighted sum of values.
std::vector<double> synthesizer_reference(AttnHarness<double>& a, const nlohmann::json& hp, int b, int h) {
  const int64_t r0 = a.offsets[b];
  const int n = a.offsets[b + 1] - a.offsets[b], d = a.dk;
  int L = 0;  // max_len: the longest example
  for (size_t e = 0; e + 1 < a.offsets.size(); ++e) L = std::max(L, a.offsets[e + 1] - a.offsets[e]);
  const std::string mode = hp["mode"];
  const int k = hp["k"];
  const auto& P = a.params.values;
  auto q = [&](int i, int c) { return a.at(0, r0 + i, h, c); };
  auto syn = [&](int i, int j) {
    double s = 0;
    if (mode == "random") return P[0][(static_cast<size_t>(h) * L + i) * L + j];
    if (mode == "factorized") {
      for (int r = 0; r < k; ++r)
        s += P[0][(static_cast<size_t>(h) * L + i) * k + r] * P[1][(static_cast<size_t>(h) * L + j) * k + r];
      return s;
    }
    for (int c = 0; c < d; ++c) {
      double u = P[1][h * d + c];
      for (int e = 0; e < d; ++e) u += P[0][(static_cast<size_t>(h) * d + c) * d + e] * q(i, e);
      s += P[2][(static_cast<size_t>(h) * L + j) * d + c] * std::max(u, 0.0);
    }
    return s + P[3][static_cast<size_t>(h) * L + j];
  };
  std::vector<double> o(static_cast<size_t>(n) * d, 0.0);
  for (int i = 0; i < n; ++i) {
    std::vector<double> s(n, -INFINITY);
    double m = -INFINITY;
    for (int j = 0; j < n; ++j) {
      if ((!a.mask.empty() && a.mask[r0 + j] == 0) || (hp["causal"].get<bool>() && j > i)) continue;
      s[j] = syn(i, j);
      if (hp["dot_product"].get<bool>())
        for (int c = 0; c < d; ++c) s[j] += q(i, c) * a.at(1, r0 + j, h, c) / std::sqrt(d);
      m = std::max(m, s[j]);
    }
    if (m == -INFINITY) continue;
    double z = 0;
    for (int j = 0; j < n; ++j) z += std::exp(s[j] - m);
    for (int j = 0; j < n; ++j)
      for (int c = 0; c < d; ++c) o[i * d + c] += std::exp(s[j] - m) / z * a.at(2, r0 + j, h, c);
  }
  return o;
}

// The flat index in `shape` of a multi-index, and the leading corner of shape `big` that `small` covers:
// a run with a shorter max_len uses that corner of each weight (the first rows, the first columns).
size_t flat_index(const std::vector<int>& shape, const std::vector<int>& idx) {
  size_t f = 0;
  for (size_t i = 0; i < shape.size(); ++i) f = f * shape[i] + idx[i];
  return f;
}
template <class F>
void for_each_index(const std::vector<int>& shape, F&& f) {
  std::vector<int> idx(shape.size(), 0);
  int64_t n = 1;
  for (int s : shape) n *= s;
  for (int64_t e = 0; e < n; ++e) {
    f(idx);
    for (int i = static_cast<int>(shape.size()) - 1; i >= 0 && ++idx[i] == shape[i]; --i) idx[i] = 0;
  }
}

}  // namespace

TEST_CASE("synthesizer gradients match finite differences", "[synthesizer]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> a("synthesizer", 2, 4, {70, 5, 1, 130}, 130, hp);
    mask_every(a, 2, 7);
    CHECK(fd_error(a, 10) < kTol);
  }
  SECTION("with attention dropout (regenerated in the backward)") {
    for (const char* mode : {"random", "factorized", "dense"}) {
      INFO(mode);
      AttnHarness<double> a("synthesizer", 2, 4, {9, 66, 1}, 66, {{"mode", mode}, {"k", 3}}, 0.25f);
      mask_every(a, 1, 4);
      a.step = AttnStep{true, 1234, 5, 0};
      CHECK(fd_error(a, 11) < kTol);
    }
  }
  SECTION("without a key mask, one head") {
    for (const char* mode : {"random", "factorized", "dense"}) {
      INFO(mode);
      AttnHarness<double> a("synthesizer", 1, 3, {65, 2}, 65, {{"mode", mode}});
      CHECK(fd_error(a, 12) < kTol);
    }
  }
}

TEST_CASE("synthesizer equals its formula written plainly", "[synthesizer]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> a("synthesizer", 3, 4, {100, 17, 1, 64}, 100, hp);
    mask_every(a, 3, 5);
    a.qkv = randn(a.qkv.size(), 13, 1.5);
    randomise_weights(a, 14, 0.7);
    a.forward();
    double worst = 0;
    for (int b = 0; b < 4; ++b)
      for (int h = 0; h < a.H; ++h) {
        const auto o = synthesizer_reference(a, hp, b, h);
        for (int i = 0; i < a.offsets[b + 1] - a.offsets[b]; ++i)
          for (int c = 0; c < a.dk; ++c)
            worst = std::max(worst, std::fabs(o[i * a.dk + c] - a.out_at(a.offsets[b] + i, h, c)));
      }
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("synthesizer: a padded batch equals per-example runs", "[synthesizer]") {
  // Example 0 is 70 real tokens padded to 80 (crossing a query tile), example 1 has 25; each alone uses
  // the leading corner of the same weights, and the batch's weight gradients are the examples' sums.
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> full("synthesizer", 2, 4, {80, 25}, 80, hp);
    randomise_weights(full, 17, 0.7);
    full.qkv = randn(full.qkv.size(), 15);
    full.mask.assign(105, 1);
    for (int r = 70; r < 80; ++r) full.mask[r] = 0;
    full.dout = randn(full.out.size(), 16);
    for (int r = 70; r < 80; ++r)
      for (int c = 0; c < full.Q; ++c) full.dout[r * full.Q + c] = 0.0;
    full.forward();
    full.backward();
    const auto specs = full.attn->param_specs();
    std::vector<std::vector<double>> sums;
    for (const auto& g : full.params.grads) sums.emplace_back(g.size(), 0.0);
    const int starts[] = {0, 80}, lengths[] = {70, 25};
    for (int e = 0; e < 2; ++e) {
      AttnHarness<double> one("synthesizer", 2, 4, {lengths[e]}, 80, hp);
      const auto one_specs = one.attn->param_specs();
      for (size_t p = 0; p < specs.size(); ++p)
        for_each_index(one_specs[p].shape, [&](const std::vector<int>& idx) {
          one.params.values[p][flat_index(one_specs[p].shape, idx)] =
              full.params.values[p][flat_index(specs[p].shape, idx)];
        });
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
      for (size_t p = 0; p < specs.size(); ++p)
        for_each_index(one_specs[p].shape, [&](const std::vector<int>& idx) {
          sums[p][flat_index(specs[p].shape, idx)] += one.params.grads[p][flat_index(one_specs[p].shape, idx)];
        });
    }
    for (size_t p = 0; p < specs.size(); ++p) {
      INFO(specs[p].name);
      CHECK(max_abs_diff(sums[p], full.params.grads[p]) < 1e-12);
    }
    for (int r = 70; r < 80; ++r)
      for (int c = full.Q; c < 3 * full.Q; ++c) CHECK(full.dqkv[r * 3 * full.Q + c] == 0.0);
  }
}

TEST_CASE("synthesizer: masked keys contribute nothing, an all-masked example gives zeros", "[synthesizer]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> a("synthesizer", 2, 4, {30, 20, 6}, 32, hp);
    randomise_weights(a, 21, 0.7);
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
    for (const auto& g : a.params.grads)
      for (double x : g) CHECK(std::isfinite(x));
    for (int64_t r = 50; r < 56; ++r) {
      for (int c = 0; c < a.Q; ++c) CHECK(a.out[r * a.Q + c] == 0.0);
      for (int c = 0; c < 3 * a.Q; ++c) CHECK(a.dqkv[r * 3 * a.Q + c] == 0.0);
    }
  }
}

TEST_CASE("synthesizer: a causal output does not change when later tokens change", "[synthesizer]") {
  for (const char* mode : {"random", "factorized", "dense"}) {
    INFO(mode);
    AttnHarness<double> a("synthesizer", 2, 4, {150}, 150, {{"mode", mode}, {"causal", true}});
    a.qkv = randn(a.qkv.size(), 14);
    a.forward();
    const auto before = a.out;
    const int cut = 77;
    for (int64_t r = cut; r < 150; ++r)
      for (int c = 0; c < 3 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] += 3.0;
    a.forward();
    double moved_before = 0, moved_after = 0;
    for (int64_t r = 0; r < 150; ++r)
      for (int c = 0; c < a.Q; ++c) {
        const double d = std::fabs(a.out[r * a.Q + c] - before[r * a.Q + c]);
        if (r < cut)
          moved_before = std::max(moved_before, d);
        else
          moved_after = std::max(moved_after, d);
      }
    CHECK(moved_before == 0.0);
    CHECK(moved_after > 1e-3);
  }
}

TEST_CASE("synthesizer: weight gradients accumulate", "[synthesizer]") {
  for (const char* mode : {"random", "factorized", "dense"}) {
    INFO(mode);
    AttnHarness<double> a("synthesizer", 2, 4, {12, 70}, 70, {{"mode", mode}});
    randomise_weights(a, 29, 0.7);
    a.qkv = randn(a.qkv.size(), 30);
    a.dout = randn(a.out.size(), 31);
    a.forward();
    a.backward();
    const auto once = a.params.grads;
    AttnGrads<double> g{a.dout.data(), a.dqkv.data(), a.dqkv.data() + a.Q, a.dqkv.data() + 2 * a.Q};
    a.attn->backward(a.seq(), a.io(), g, a.saved.data(), a.scratch.data(), a.step);
    for (size_t p = 0; p < once.size(); ++p) {
      double worst = 0;
      for (size_t i = 0; i < once[p].size(); ++i)
        worst = std::max(worst, std::fabs(a.params.grads[p][i] - 2 * once[p][i]));
      CHECK(worst < 1e-13);
    }
  }
}

TEST_CASE("synthesizer: float agrees with double", "[synthesizer]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> d("synthesizer", 2, 8, {200, 77}, 200, hp);
    AttnHarness<float> f("synthesizer", 2, 8, {200, 77}, 200, hp);
    d.mask.assign(277, 1);
    for (int r = 5; r < 277; r += 9) d.mask[r] = 0;
    f.mask = d.mask;
    randomise_weights(d, 25, 0.7);
    for (size_t p = 0; p < d.params.values.size(); ++p)
      std::copy(d.params.values[p].begin(), d.params.values[p].end(), f.params.values[p].begin());
    d.qkv = randn(d.qkv.size(), 23);
    f.qkv = cast<float>(d.qkv);
    d.dout = randn(d.out.size(), 24);
    f.dout = cast<float>(d.dout);
    d.forward();
    f.forward();
    d.backward();
    f.backward();
    double worst = 0, worst_grad = 0;
    for (size_t i = 0; i < d.out.size(); ++i) worst = std::max(worst, std::fabs(d.out[i] - f.out[i]));
    for (size_t i = 0; i < d.dqkv.size(); ++i) worst_grad = std::max(worst_grad, std::fabs(d.dqkv[i] - f.dqkv[i]));
    CHECK(worst < 1e-4 * std::max(1.0, max_abs(d.out)));
    CHECK(worst_grad < 1e-4 * std::max(1.0, max_abs(d.dqkv)));
    for (size_t p = 0; p < d.params.grads.size(); ++p) {
      double w = 0;
      for (size_t i = 0; i < d.params.grads[p].size(); ++i)
        w = std::max(w, std::fabs(d.params.grads[p][i] - f.params.grads[p][i]));
      CHECK(w < 1e-4 * std::max(1.0, max_abs(d.params.grads[p])));
    }
  }
}

TEST_CASE("synthesizer: bad hyperparameters are clear errors, weights follow the mode", "[synthesizer]") {
  auto make = [](nlohmann::json hp) { AttnHarness<double> a("synthesizer", 1, 4, {4}, 4, hp); };
  CHECK_THROWS_WITH(make({{"mode", "dense+random"}}),
                    Catch::Contains("mode must be random, factorized or dense, got 'dense+random'"));
  CHECK_THROWS_WITH(make({{"k", 0}}),
                    Catch::Contains("k (the rank of the factorized mode) must be a positive integer"));
  CHECK_THROWS_WITH(make({{"k", 1.5}}), Catch::Contains("must be a positive integer, got 1.5"));
  CHECK_THROWS_WITH(make({{"dot_product", 1}}), Catch::Contains("expects a value like true"));
  auto names = [](nlohmann::json hp) {
    AttnHarness<double> a("synthesizer", 3, 4, {6}, 6, hp);
    std::vector<std::string> n;
    for (const auto& s : a.attn->param_specs()) n.push_back(s.name + fmt::format("{}", fmt::join(s.shape, "x")));
    return n;
  };
  CHECK(names({}) == std::vector<std::string>{"random3x6x6"});
  CHECK(names({{"mode", "factorized"}, {"k", 2}}) == std::vector<std::string>{"random_a3x6x2", "random_b3x6x2"});
  CHECK(names({{"mode", "dense"}}) == std::vector<std::string>{"w13x4x4", "b13x4", "w23x6x4", "b23x6"});
}
