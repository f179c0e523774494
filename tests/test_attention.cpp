// Attention variants, every one of them bidirectional and causal: finite-difference gradients (double,
// padding masks, several examples of different lengths, tiles and causal chunks crossed), exactness
// against explicit quadratic references, causality, padding against per-example runs, float against
// double. Performer's error against softmax as the feature count grows is in test_performer.cpp.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "attn_cases.h"
#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kTol = 1e-6;

// The variants whose explicit reference lives in this file; the others are checked against theirs in
// their own test file (test_attn_*.cpp).
bool has_reference_here(const std::string& name) {
  for (const char* n : {"softmax", "cosformer", "linear", "performer", "performer-relu"})
    if (name == n) return true;
  return false;
}

TEST_CASE("the settings table names registered variants only", "[attn]") {
  const std::vector<std::string> names = attention_names();
  for (const auto& [name, _] : attn_settings()) {
    INFO(name);
    CHECK(std::find(names.begin(), names.end(), name) != names.end());
  }
}

// The generic gradient check: learned weights drawn away from their initialisation (zero biases would
// sit on ReLU kinks), then qkv and every weight by central differences.
double fd_error(AttnHarness<double>& a, uint64_t seed) {
  randomise_weights(a, seed + 50, 0.5);
  return attention_fd_error(a, seed);
}

// The rows of example b, head h, as explicit matrices.
struct Slice {
  int L;
  std::vector<std::vector<double>> q, k, v;
  std::vector<bool> real;  // key mask
};

Slice slice(AttnHarness<double>& a, int b, int h) {
  Slice s;
  const int64_t r0 = a.offsets[b];
  s.L = a.offsets[b + 1] - a.offsets[b];
  for (int i = 0; i < s.L; ++i) {
    std::vector<double> q(a.dk), k(a.dk), v(a.dk);
    for (int c = 0; c < a.dk; ++c) {
      q[c] = a.at(0, r0 + i, h, c);
      k[c] = a.at(1, r0 + i, h, c);
      v[c] = a.at(2, r0 + i, h, c);
    }
    s.q.push_back(q);
    s.k.push_back(k);
    s.v.push_back(v);
    s.real.push_back(a.mask.empty() || a.mask[r0 + i] != 0);
  }
  return s;
}

// Explicit softmax attention: masked (and, causal, future) scores at -inf, softmax, weighted sum.
std::vector<double> softmax_reference(const Slice& s, int dk, bool causal) {
  std::vector<double> o(static_cast<size_t>(s.L) * dk, 0.0);
  for (int i = 0; i < s.L; ++i) {
    std::vector<double> sc(s.L, -INFINITY);
    double m = -INFINITY;
    for (int j = 0; j < s.L; ++j) {
      if (!s.real[j] || (causal && j > i)) continue;
      double d = 0;
      for (int c = 0; c < dk; ++c) d += s.q[i][c] * s.k[j][c];
      sc[j] = d / std::sqrt(dk);
      m = std::max(m, sc[j]);
    }
    if (m == -INFINITY) continue;
    double z = 0;
    for (int j = 0; j < s.L; ++j) z += std::exp(sc[j] - m);
    for (int j = 0; j < s.L; ++j)
      for (int c = 0; c < dk; ++c) o[i * dk + c] += std::exp(sc[j] - m) / z * s.v[j][c];
  }
  return o;
}

using Features = std::function<std::vector<double>(const std::vector<double>& x, int i, bool key)>;

// The left (quadratic) product of kernelised attention: A_ij = phi(q_i) . phi(k_j) over real keys
// (j <= i when causal), O_i = sum_j A_ij v_j / guard(sum_j A_ij).
std::vector<double> kernel_reference(const Slice& s, int dk, bool causal, const Features& phi,
                                     const std::function<double(double)>& guard) {
  std::vector<double> o(static_cast<size_t>(s.L) * dk, 0.0);
  std::vector<std::vector<double>> fk;
  for (int j = 0; j < s.L; ++j) fk.push_back(phi(s.k[j], j, true));
  for (int i = 0; i < s.L; ++i) {
    const auto fq = phi(s.q[i], i, false);
    double den = 0;
    std::vector<double> num(dk, 0.0);
    for (int j = 0; j < s.L; ++j) {
      if (!s.real[j] || (causal && j > i)) continue;
      double a = 0;
      for (size_t r = 0; r < fq.size(); ++r) a += fq[r] * fk[j][r];
      den += a;
      for (int c = 0; c < dk; ++c) num[c] += a * s.v[j][c];
    }
    for (int c = 0; c < dk; ++c) o[i * dk + c] = num[c] / guard(den);
  }
  return o;
}

double relu_d(double x) { return std::max(0.0, x); }

// Performer's softmax-kernel features with its stabilisers: the row max for a query, for keys the max
// over every real key of the slice or, causal, over its first real key.
Features performer_features(const std::vector<double>& W, int m, int dk, const Slice& s, double feps, bool causal) {
  const double c = std::pow(dk, -0.25);
  auto u_of = [=](const std::vector<double>& x) {
    std::vector<double> u(m, 0.0);
    for (int r = 0; r < m; ++r)
      for (int j = 0; j < dk; ++j) u[r] += W[r * dk + j] * c * x[j];
    return u;
  };
  double sk = -INFINITY;
  for (int j = 0; j < s.L; ++j)
    if (s.real[j]) {
      for (double u : u_of(s.k[j])) sk = std::max(sk, u);
      if (causal) break;
    }
  return [=](const std::vector<double>& x, int, bool key) {
    const auto u = u_of(x);
    double h = 0;
    for (double v : x) h += c * v * c * v / 2;
    const double st = key ? sk : *std::max_element(u.begin(), u.end());
    std::vector<double> f(m);
    for (int r = 0; r < m; ++r) f[r] = (std::exp(u[r] - h - st) + feps) / std::sqrt(m);
    return f;
  };
}

Features relu_projection_features(const std::vector<double>& W, int m, int dk, double keps) {
  const double c = std::pow(dk, -0.25);
  return [=](const std::vector<double>& x, int, bool) {
    std::vector<double> f(m);
    for (int r = 0; r < m; ++r) {
      double u = 0;
      for (int j = 0; j < dk; ++j) u += W[r * dk + j] * c * x[j];
      f[r] = relu_d(u) + keps;
    }
    return f;
  };
}

// The explicit reference of a variant for (example b, head h), from its published formula.
std::vector<double> reference(AttnHarness<double>& a, const Variant& var, const std::vector<double>& W, int b,
                              int h) {
  const Slice s = slice(a, b, h);
  const bool causal = var.hp.value("causal", false);
  const int dk = a.dk;
  auto clamp = [](double d) { return std::max(d, 1e-6); };
  if (var.name == "softmax") return softmax_reference(s, dk, causal);
  if (var.name == "linear")
    return kernel_reference(
        s, dk, causal,
        [](const std::vector<double>& x, int, bool) {
          std::vector<double> f;
          for (double v : x) f.push_back(v > 0 ? v + 1 : std::exp(v));
          return f;
        },
        [](double d) { return d + 1e-6; });
  if (var.name == "cosformer") {
    const double M = a.L_pad;
    return kernel_reference(
        s, dk, causal,
        [M](const std::vector<double>& x, int i, bool) {
          const double th = 1.5707963267948966 * (i + 1) / M;
          std::vector<double> f;
          for (double v : x) f.push_back(relu_d(v) * std::sin(th));
          for (double v : x) f.push_back(relu_d(v) * std::cos(th));
          return f;
        },
        clamp);
  }
  if (var.name == "performer")
    return kernel_reference(s, dk, causal, performer_features(W, var.hp["features"], dk, s, 1e-6, causal), clamp);
  const int m = var.hp.value("features", 0);
  if (m > 0) return kernel_reference(s, dk, causal, relu_projection_features(W, m, dk, 1e-3), clamp);
  return kernel_reference(
      s, dk, causal,
      [](const std::vector<double>& x, int, bool) {
        std::vector<double> f;
        for (double v : x) f.push_back(relu_d(v) + 1e-3);
        return f;
      },
      clamp);
}

double max_err_vs_reference(AttnHarness<double>& a, const Variant& var, const std::vector<double>& W) {
  double worst = 0;
  for (int b = 0; b + 1 < static_cast<int>(a.offsets.size()); ++b)
    for (int h = 0; h < a.H; ++h) {
      const auto o = reference(a, var, W, b, h);
      const int L = a.offsets[b + 1] - a.offsets[b];
      for (int i = 0; i < L; ++i)
        for (int c = 0; c < a.dk; ++c)
          worst = std::max(worst, std::fabs(o[i * a.dk + c] - a.out_at(a.offsets[b] + i, h, c)));
    }
  return worst;
}

}  // namespace

TEST_CASE("every variant's gradients match finite differences", "[attn][grad]") {
  // Lengths cross softmax's 64-query tiles and the 64-row causal chunks; some keys are masked.
  for (const auto& v : all_attn_variants()) {
    INFO(v.label());
    AttnHarness<double> a(v.name, 2, 4, {70, 5, 1, 130}, 130, v.hp);
    mask_every(a, 2, 7);
    CHECK(fd_error(a, 10) < kTol);
  }
}

TEST_CASE("softmax gradients with attention dropout (the mask is regenerated in the backward)", "[attn][grad]") {
  for (bool causal : {false, true})
    for (bool store : {false, true}) {
      AttnHarness<double> a("softmax", 2, 4, {9, 66}, 66, {{"causal", causal}, {"store_probs", store}}, 0.25f);
      a.step = AttnStep{true, 1234, 5, 0};
      CHECK(fd_error(a, 11) < kTol);
    }
}

TEST_CASE("every variant equals its explicit quadratic form", "[attn]") {
  for (const auto& v : all_attn_variants()) {
    if (!has_reference_here(v.name)) continue;
    INFO(v.label());
    AttnHarness<double> a(v.name, 3, 4, {100, 17, 64}, 100, v.hp);
    mask_every(a, 3, 5);
    a.qkv = randn(a.qkv.size(), 12, 1.5);
    std::vector<double> W;
    if (v.hp.value("features", 0) > 0) {
      W = randn(static_cast<size_t>(v.hp["features"].get<int>()) * a.dk, 13);
      a.attn->set_random_features(W);
    }
    a.forward();
    CHECK(max_err_vs_reference(a, v, W) < 1e-12);
  }
}

TEST_CASE("a causal output does not change when later tokens change", "[attn][causal]") {
  for (const auto& v : attn_variants(true)) {
    // Reformer's causal mode hides later keys, but which earlier keys share a query's chunk depends on
    // every position's hash (as in the paper); test_attn_reformer.cpp checks that no later key is seen.
    if (v.name == "reformer") continue;
    INFO(v.label());
    AttnHarness<double> a(v.name, 2, 4, {150}, 150, v.hp);
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
        (r < cut ? moved_before : moved_after) = std::max(r < cut ? moved_before : moved_after, d);
      }
    CHECK(moved_before == 0.0);
    CHECK(moved_after > 1e-3);
  }
}

TEST_CASE("a padded batch equals per-example runs", "[attn][padding]") {
  // Example 0 is 30 real tokens padded to 40 (the last 10 keys masked), example 1 is 25 real tokens;
  // each alone, unpadded, in a batch with the same padded length (cosFormer's M).
  for (const auto& v : all_attn_variants()) {
    INFO(v.label());
    AttnHarness<double> full(v.name, 2, 4, {40, 25}, 40, v.hp);
    full.qkv = randn(full.qkv.size(), 15);
    full.mask.assign(65, 1);
    for (int r = 30; r < 40; ++r) full.mask[r] = 0;
    full.dout = randn(full.out.size(), 16);
    for (int r = 30; r < 40; ++r)
      for (int c = 0; c < full.Q; ++c) full.dout[r * full.Q + c] = 0.0;  // padded rows are never pooled
    full.forward();
    full.backward();
    const int starts[] = {0, 40}, lengths[] = {30, 25};
    for (int e = 0; e < 2; ++e) {
      AttnHarness<double> one(v.name, 2, 4, {lengths[e]}, 40, v.hp);
      const int64_t s0 = starts[e];
      for (int64_t i = 0; i < static_cast<int64_t>(one.qkv.size()); ++i) one.qkv[i] = full.qkv[s0 * 3 * full.Q + i];
      for (int64_t i = 0; i < static_cast<int64_t>(one.dout.size()); ++i) one.dout[i] = full.dout[s0 * full.Q + i];
      one.forward();
      one.backward();
      double worst = 0;
      for (int64_t i = 0; i < static_cast<int64_t>(one.out.size()); ++i)
        worst = std::max(worst, std::fabs(one.out[i] - full.out[s0 * full.Q + i]));
      for (int64_t i = 0; i < static_cast<int64_t>(one.dqkv.size()); ++i)
        worst = std::max(worst, std::fabs(one.dqkv[i] - full.dqkv[s0 * 3 * full.Q + i]));
      CHECK(worst < 1e-12);
    }
    // The padded keys and values get no gradient.
    for (int r = 30; r < 40; ++r)
      for (int c = full.Q; c < 3 * full.Q; ++c) CHECK(full.dqkv[r * 3 * full.Q + c] == 0.0);
  }
}

TEST_CASE("masked keys contribute nothing", "[attn][padding]") {
  for (const auto& v : all_attn_variants()) {
    INFO(v.label());
    AttnHarness<double> a(v.name, 2, 4, {30, 20}, 32, v.hp);
    a.mask.assign(50, 1);
    for (int r : {3, 17, 29, 35, 49}) a.mask[r] = 0;
    a.qkv = randn(a.qkv.size(), 22);
    a.forward();
    const auto before = a.out;
    for (int r : {3, 17, 29, 35, 49})
      for (int c = a.Q; c < 3 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] += 5.0;  // change those keys and values
    a.forward();
    CHECK(max_abs_diff(a.out, before) < 1e-12);
  }
}

TEST_CASE("an example with every key masked gives zeros, not NaN", "[attn][padding]") {
  for (const auto& v : all_attn_variants()) {
    INFO(v.label());
    AttnHarness<double> a(v.name, 2, 3, {6, 4}, 6, v.hp);
    a.mask = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    a.qkv = randn(a.qkv.size(), 15);
    a.dout = randn(a.out.size(), 16);
    a.forward();
    a.backward();
    for (double x : a.out) CHECK(std::isfinite(x));
    for (double x : a.dqkv) CHECK(std::isfinite(x));
    for (int64_t r = 6; r < 10; ++r)
      for (int c = 0; c < a.Q; ++c) CHECK(a.out[r * a.Q + c] == 0.0);
  }
}

TEST_CASE("every variant writes all of its outputs and nothing around them", "[attn]") {
  // The calls of a normal run again, with the output, the gradients, the saved state and the scratch
  // filled with NaN (0xFF bytes) and the output and gradients between guard values: every output and
  // gradient must be written (finite, and equal to the normal run's) and no guard touched.
  constexpr size_t kGuard = 64;
  constexpr double kSentinel = 12345.678;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const auto& v : all_attn_variants()) {
    INFO(v.label());
    const float p = find_attention(v.name).uses_attention_dropout ? 0.1f : 0.0f;
    AttnHarness<double> a(v.name, 2, 8, {70, 0, 5, 130}, 130, v.hp, p);
    mask_every(a, 2, 7);
    a.qkv = randn(a.qkv.size(), 41);
    a.dout = randn(a.out.size(), 42);
    a.step = AttnStep{true, 99, 3, 2};
    a.forward();
    a.backward();
    const auto weight_grads = a.params.grads;

    auto guarded = [&](size_t n) {
      std::vector<double> b(kGuard + n + kGuard, kSentinel);
      std::fill(b.begin() + kGuard, b.end() - kGuard, nan);
      return b;
    };
    std::vector<double> out = guarded(a.out.size()), dqkv = guarded(a.dqkv.size());
    std::vector<char> saved(a.saved.size(), static_cast<char>(0xFF)), scratch(a.scratch.size(), static_cast<char>(0xFF));
    AttnIO<double> io = a.io();
    io.out = out.data() + kGuard;
    a.attn->forward(a.seq(), io, saved.data(), scratch.data(), a.step);
    std::fill(scratch.begin(), scratch.end(), static_cast<char>(0xFF));
    AttnGrads<double> g;
    g.dout = a.dout.data();
    g.dq = dqkv.data() + kGuard;
    g.dk = g.dq + a.Q;
    g.dv = g.dq + 2 * a.Q;
    a.params.zero_grads();
    a.attn->backward(a.seq(), io, g, saved.data(), scratch.data(), a.step);

    for (const auto* b : {&out, &dqkv})
      for (size_t i = 0; i < kGuard; ++i) {
        CHECK((*b)[i] == kSentinel);
        CHECK((*b)[b->size() - 1 - i] == kSentinel);
      }
    const std::vector<double> o(out.begin() + kGuard, out.end() - kGuard), d(dqkv.begin() + kGuard, dqkv.end() - kGuard);
    CHECK(std::all_of(o.begin(), o.end(), [](double x) { return std::isfinite(x); }));
    CHECK(std::all_of(d.begin(), d.end(), [](double x) { return std::isfinite(x); }));
    CHECK(max_abs_diff(o, a.out) <= 1e-12 * std::max(1.0, max_abs(a.out)));
    CHECK(max_abs_diff(d, a.dqkv) <= 1e-12 * std::max(1.0, max_abs(a.dqkv)));
    for (size_t i = 0; i < weight_grads.size(); ++i) {
      INFO("learned weight " << a.attn->param_specs()[i].name);
      CHECK(max_abs_diff(a.params.grads[i], weight_grads[i]) <= 1e-12 * std::max(1.0, max_abs(weight_grads[i])));
    }
  }
}

TEST_CASE("float attention agrees with double", "[attn]") {
  for (const auto& v : all_attn_variants()) {
    INFO(v.label());
    AttnHarness<double> d(v.name, 2, 8, {200, 77}, 200, v.hp);
    AttnHarness<float> f(v.name, 2, 8, {200, 77}, 200, v.hp);
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
    CHECK(worst_grad < 1e-3 * std::max(1.0, max_abs(d.dqkv)));
  }
}

TEST_CASE("an example longer than planned is an error, not a crash", "[attn]") {
  for (const auto& v : all_attn_variants()) {
    INFO(v.label());
    AttnHarness<double> a(v.name, 1, 2, {4, 4}, 4, v.hp);  // planned for examples of at most 4 rows
    a.offsets = {0, 8};                                    // the same 8 rows as one example
    CHECK_THROWS_WITH(a.forward(), Catch::Contains("example 0 has 8 rows; attention was planned for at most 4"));
  }
}

TEST_CASE("only variants with a projection take random features", "[attn]") {
  AttnHarness<double> s("softmax", 1, 4, {4}, 4);
  CHECK_THROWS_WITH(s.attn->set_random_features({1.0}), Catch::Contains("draws no random features"));
  AttnHarness<double> p("performer", 1, 4, {4}, 4, {{"features", 3}});
  CHECK_THROWS_WITH(p.attn->set_random_features({1.0}), Catch::Contains("expected 3 x 4 = 12 values, got 1"));
}
