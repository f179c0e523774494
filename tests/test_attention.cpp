// Attention variants: finite-difference gradients (double, with padding masks, several examples of
// different lengths, tiles crossed), exactness against explicit quadratic references, and padding.
#include <catch2/catch.hpp>
#include <cmath>

#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kTol = 1e-6;

// l = sum(out * R): dout = R; checks dq, dk, dv by central differences over the fused qkv buffer.
double attention_fd_error(AttnHarness<double>& a, uint64_t seed, size_t samples = 60) {
  a.qkv = randn(a.qkv.size(), seed);
  const auto R = randn(a.out.size(), seed + 1);
  a.dout = R;
  a.forward();
  a.backward();
  auto loss = [&] {
    a.forward();
    return dot(a.out, R);
  };
  return fd_rel_error(a.qkv, a.dqkv, loss, samples, seed);
}

// Explicit softmax attention for (example b, head h): masked scores, softmax, weighted sum.
std::vector<double> softmax_reference(AttnHarness<double>& a, int b, int h) {
  const int64_t r0 = a.offsets[b];
  const int L = a.offsets[b + 1] - a.offsets[b];
  std::vector<double> o(static_cast<size_t>(L) * a.dk, 0.0);
  for (int i = 0; i < L; ++i) {
    std::vector<double> s(L);
    double m = -INFINITY;
    for (int j = 0; j < L; ++j) {
      if (!a.mask.empty() && a.mask[r0 + j] == 0) {
        s[j] = -INFINITY;
        continue;
      }
      double d = 0;
      for (int c = 0; c < a.dk; ++c) d += a.at(0, r0 + i, h, c) * a.at(1, r0 + j, h, c);
      s[j] = d / std::sqrt(a.dk);
      m = std::max(m, s[j]);
    }
    if (m == -INFINITY) continue;
    double z = 0;
    for (int j = 0; j < L; ++j) z += std::exp(s[j] - m);
    for (int j = 0; j < L; ++j)
      for (int c = 0; c < a.dk; ++c) o[i * a.dk + c] += std::exp(s[j] - m) / z * a.at(2, r0 + j, h, c);
  }
  return o;
}

// cosFormer's left (quadratic) product: sum_j relu(q_i).relu(k_j) cos(pi/2 (i-j)/M) v_j / max(den, eps).
std::vector<double> cosformer_reference(AttnHarness<double>& a, int b, int h, double eps) {
  const int64_t r0 = a.offsets[b];
  const int L = a.offsets[b + 1] - a.offsets[b];
  const double M = a.L_pad;
  std::vector<double> o(static_cast<size_t>(L) * a.dk, 0.0);
  for (int i = 0; i < L; ++i) {
    double den = 0;
    std::vector<double> num(a.dk, 0.0);
    for (int j = 0; j < L; ++j) {
      if (!a.mask.empty() && a.mask[r0 + j] == 0) continue;
      double s = 0;
      for (int c = 0; c < a.dk; ++c)
        s += std::max(0.0, a.at(0, r0 + i, h, c)) * std::max(0.0, a.at(1, r0 + j, h, c));
      s *= std::cos(1.5707963267948966 * (i - j) / M);
      den += s;
      for (int c = 0; c < a.dk; ++c) num[c] += s * a.at(2, r0 + j, h, c);
    }
    for (int c = 0; c < a.dk; ++c) o[i * a.dk + c] = num[c] / std::max(den, eps);
  }
  return o;
}

double max_err_vs_reference(AttnHarness<double>& a, const std::function<std::vector<double>(int, int)>& ref) {
  double worst = 0;
  for (int b = 0; b + 1 < static_cast<int>(a.offsets.size()); ++b)
    for (int h = 0; h < a.H; ++h) {
      const auto o = ref(b, h);
      const int L = a.offsets[b + 1] - a.offsets[b];
      for (int i = 0; i < L; ++i)
        for (int c = 0; c < a.dk; ++c)
          worst = std::max(worst, std::fabs(o[i * a.dk + c] - a.out_at(a.offsets[b] + i, h, c)));
    }
  return worst;
}

}  // namespace

TEST_CASE("softmax attention gradients match finite differences", "[attn][softmax][grad]") {
  SECTION("several lengths, a key mask, query tiles crossed") {
    AttnHarness<double> a("softmax", 2, 3, {70, 5, 1, 130}, 130);
    a.mask.assign(static_cast<size_t>(a.rows()), 1);
    for (int64_t r = 0; r < a.rows(); r += 7) a.mask[r] = 0;
    CHECK(attention_fd_error(a, 10) < kTol);
  }
  SECTION("with attention dropout (the mask is regenerated in the backward)") {
    AttnHarness<double> a("softmax", 2, 4, {9, 66}, 66, {}, 0.25f);
    a.step = AttnStep{true, 1234, 5};
    CHECK(attention_fd_error(a, 11) < kTol);
  }
}

TEST_CASE("softmax attention equals the explicit quadratic form", "[attn][softmax]") {
  AttnHarness<double> a("softmax", 3, 4, {100, 17, 64}, 100);
  a.mask.assign(static_cast<size_t>(a.rows()), 1);
  for (int64_t r = 3; r < a.rows(); r += 5) a.mask[r] = 0;
  a.qkv = randn(a.qkv.size(), 12, 2.0);
  a.forward();
  CHECK(max_err_vs_reference(a, [&](int b, int h) { return softmax_reference(a, b, h); }) < 1e-12);
}

TEST_CASE("masked softmax equals softmax on the truncated sequence", "[attn][softmax][padding]") {
  // One example of 40 tokens whose last 15 keys are masked, against the same 25 tokens alone.
  AttnHarness<double> full("softmax", 2, 4, {40}, 40);
  AttnHarness<double> cut("softmax", 2, 4, {25}, 25);
  full.qkv = randn(full.qkv.size(), 13);
  for (size_t i = 0; i < cut.qkv.size(); ++i) cut.qkv[i] = full.qkv[i];
  full.mask.assign(40, 1);
  for (int r = 25; r < 40; ++r) full.mask[r] = 0;
  full.forward();
  cut.forward();
  for (int r = 0; r < 25; ++r)
    for (int c = 0; c < full.Q; ++c) CHECK(full.out[r * full.Q + c] == Approx(cut.out[r * cut.Q + c]).epsilon(1e-12));
  // Gradients of the kept rows agree too, and the masked keys get none.
  const auto R = randn(cut.out.size(), 14);
  cut.dout = R;
  full.dout.assign(full.out.size(), 0.0);
  for (size_t i = 0; i < R.size(); ++i) full.dout[i] = R[i];
  full.backward();
  cut.backward();
  for (int r = 0; r < 25; ++r)
    for (int c = 0; c < 3 * full.Q; ++c)
      CHECK(full.dqkv[r * 3 * full.Q + c] == Approx(cut.dqkv[r * 3 * cut.Q + c]).margin(1e-12));
  for (int r = 25; r < 40; ++r)
    for (int c = full.Q; c < 3 * full.Q; ++c) CHECK(full.dqkv[r * 3 * full.Q + c] == 0.0);
}

TEST_CASE("an example with every key masked gives zeros, not NaN", "[attn][padding]") {
  for (const char* name : {"softmax", "cosformer"}) {
    AttnHarness<double> a(name, 2, 3, {6, 4}, 6);
    a.mask = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    a.qkv = randn(a.qkv.size(), 15);
    a.dout = randn(a.out.size(), 16);
    a.forward();
    a.backward();
    for (double v : a.out) CHECK(std::isfinite(v));
    for (double v : a.dqkv) CHECK(std::isfinite(v));
    for (int64_t r = 6; r < 10; ++r)
      for (int c = 0; c < a.Q; ++c) CHECK(a.out[r * a.Q + c] == 0.0);
  }
}

TEST_CASE("cosformer gradients match finite differences", "[attn][cosformer][grad]") {
  AttnHarness<double> a("cosformer", 2, 3, {50, 7, 1, 90}, 100);
  a.mask.assign(static_cast<size_t>(a.rows()), 1);
  for (int64_t r = 2; r < a.rows(); r += 9) a.mask[r] = 0;
  CHECK(attention_fd_error(a, 20) < kTol);
}

TEST_CASE("cosformer equals its explicit quadratic form", "[attn][cosformer]") {
  AttnHarness<double> a("cosformer", 3, 4, {60, 13, 33}, 64);
  a.mask.assign(static_cast<size_t>(a.rows()), 1);
  for (int64_t r = 4; r < a.rows(); r += 6) a.mask[r] = 0;
  a.qkv = randn(a.qkv.size(), 21);
  a.forward();
  CHECK(max_err_vs_reference(a, [&](int b, int h) { return cosformer_reference(a, b, h, 1e-6); }) < 1e-12);
}

TEST_CASE("masked keys contribute nothing", "[attn][padding]") {
  for (const char* name : {"softmax", "cosformer"}) {
    AttnHarness<double> a(name, 2, 4, {30, 20}, 32);
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

TEST_CASE("float attention agrees with double", "[attn]") {
  for (const char* name : {"softmax", "cosformer"}) {
    AttnHarness<double> d(name, 2, 8, {200, 77}, 200);
    AttnHarness<float> f(name, 2, 8, {200, 77}, 200);
    d.qkv = randn(d.qkv.size(), 23);
    f.qkv = cast<float>(d.qkv);
    d.forward();
    f.forward();
    double worst = 0;
    for (size_t i = 0; i < d.out.size(); ++i) worst = std::max(worst, std::fabs(d.out[i] - f.out[i]));
    CHECK(worst < 1e-4 * std::max(1.0, max_abs(d.out)));
  }
}

TEST_CASE("an example longer than planned is an error, not a crash", "[attn]") {
  for (const char* name : {"softmax", "cosformer"}) {
    AttnHarness<double> a(name, 1, 2, {4, 4}, 4);  // planned for examples of at most 4 rows
    a.offsets = {0, 8};                            // the same 8 rows as one example
    CHECK_THROWS_WITH(a.forward(), Catch::Contains("example 0 has 8 rows; attention was planned for at most 4"));
  }
}
