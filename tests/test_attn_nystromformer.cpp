// Nystromformer: finite-difference gradients (q, k, v and the conv weight) for each code path (landmarks,
// the exact fallback, no conv, pinv_init=batch, no iteration), equality with the formulas written plainly
// below, padding against per-example runs, masked keys, and the hyperparameter errors.
#include <catch2/catch.hpp>
#include <cmath>

#include "attn/nystromformer.h"
#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kTol = 1e-6;

// A dense row-major matrix and the few operations the reference needs, written plainly.
struct Mat {
  int r = 0, c = 0;
  std::vector<double> v;
  Mat() = default;
  Mat(int rows, int cols) : r(rows), c(cols), v(static_cast<size_t>(rows) * cols, 0.0) {}
  double& operator()(int i, int j) { return v[static_cast<size_t>(i) * c + j]; }
  double operator()(int i, int j) const { return v[static_cast<size_t>(i) * c + j]; }
};

Mat mul(const Mat& a, const Mat& b) {
  Mat o(a.r, b.c);
  for (int i = 0; i < a.r; ++i)
    for (int j = 0; j < b.c; ++j) {
      double s = 0;
      for (int k = 0; k < a.c; ++k) s += a(i, k) * b(k, j);
      o(i, j) = s;
    }
  return o;
}

Mat transpose(const Mat& a) {
  Mat o(a.c, a.r);
  for (int i = 0; i < a.r; ++i)
    for (int j = 0; j < a.c; ++j) o(j, i) = a(i, j);
  return o;
}

// x I - a.
Mat shift(double x, const Mat& a) {
  Mat o(a.r, a.c);
  for (int i = 0; i < a.r; ++i)
    for (int j = 0; j < a.c; ++j) o(i, j) = (i == j ? x : 0.0) - a(i, j);
  return o;
}

// Row softmax over the columns j with real[j] (every column when real is empty); hidden columns get 0.
Mat softmax(const Mat& s, const std::vector<bool>& real) {
  Mat o(s.r, s.c);
  for (int i = 0; i < s.r; ++i) {
    double mx = -INFINITY, z = 0;
    for (int j = 0; j < s.c; ++j)
      if (real.empty() || real[j]) mx = std::max(mx, s(i, j));
    for (int j = 0; j < s.c; ++j)
      if (real.empty() || real[j]) z += std::exp(s(i, j) - mx);
    for (int j = 0; j < s.c; ++j) o(i, j) = real.empty() || real[j] ? std::exp(s(i, j) - mx) / z : 0.0;
  }
  return o;
}

struct Options {
  int m = 64, iters = 6, kernel = 35;
  bool batch = false;
};

Options options(const nlohmann::json& hp) {
  Options o;
  o.m = hp.value("landmarks", 64);
  o.iters = hp.value("pinv_iters", 6);
  o.kernel = hp.value("conv_kernel", 35);
  o.batch = hp.value("pinv_init", std::string("example")) == "batch";
  return o;
}

// One (example, head) of the harness, from its inputs: the published formulas step by step.
struct Task {
  int len = 0, n = 0;  // rows, and rows up to the last real key
  std::vector<bool> real;
  Mat qs, ks, vm, ql, kl, A;
};

Task task(AttnHarness<double>& a, const Options& o, int b, int h) {
  Task t;
  const int64_t r0 = a.offsets[b];
  t.len = a.offsets[b + 1] - a.offsets[b];
  for (int i = 0; i < t.len; ++i) t.real.push_back(a.mask.empty() || a.mask[r0 + i] != 0);
  t.n = t.len;
  while (t.n > 0 && !t.real[t.n - 1]) --t.n;
  t.real.resize(t.n);
  const double s = std::pow(a.dk, -0.25);
  t.qs = Mat(t.n, a.dk);
  t.ks = Mat(t.n, a.dk);
  t.vm = Mat(t.n, a.dk);
  for (int i = 0; i < t.n; ++i)
    for (int c = 0; c < a.dk; ++c) {
      const double mu = t.real[i] ? 1.0 : 0.0;
      t.qs(i, c) = s * mu * a.at(0, r0 + i, h, c);
      t.ks(i, c) = s * mu * a.at(1, r0 + i, h, c);
      t.vm(i, c) = mu * a.at(2, r0 + i, h, c);
    }
  if (t.n <= o.m) return t;
  t.ql = Mat(o.m, a.dk);
  t.kl = Mat(o.m, a.dk);
  for (int j = 0; j < o.m; ++j) {
    const int lo = j * t.n / o.m, hi = (j + 1) * t.n / o.m;
    for (int i = lo; i < hi; ++i)
      for (int c = 0; c < a.dk; ++c) {
        t.ql(j, c) += t.qs(i, c) / (hi - lo);
        t.kl(j, c) += t.ks(i, c) / (hi - lo);
      }
  }
  t.A = softmax(mul(t.ql, transpose(t.kl)), {});
  return t;
}

double max_column_sum(const Mat& A) {
  double best = -INFINITY;
  for (int j = 0; j < A.c; ++j) {
    double s = 0;
    for (int i = 0; i < A.r; ++i) s += A(i, j);
    best = std::max(best, s);
  }
  return best;
}

// The whole output (rows x H dk) by the formulas of lib/attn/nystromformer.cpp's header.
std::vector<double> reference(AttnHarness<double>& a, const nlohmann::json& hp) {
  const Options o = options(hp);
  std::vector<double> out(a.out.size(), 0.0);
  const int B = static_cast<int>(a.offsets.size()) - 1;
  double batch_c = -INFINITY;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < a.H; ++h) {
      const Task t = task(a, o, b, h);
      if (t.n > o.m) batch_c = std::max(batch_c, max_column_sum(t.A));
    }
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < a.H; ++h) {
      const Task t = task(a, o, b, h);
      if (t.n == 0) continue;
      Mat O;
      if (t.n <= o.m) {
        O = mul(softmax(mul(t.qs, transpose(t.ks)), t.real), t.vm);
      } else {
        const Mat F = softmax(mul(t.qs, transpose(t.kl)), {});
        const Mat Bm = softmax(mul(t.ql, transpose(t.ks)), t.real);
        const double c = o.batch ? batch_c : max_column_sum(t.A);
        Mat Z = transpose(t.A);
        for (double& x : Z.v) x /= c;
        for (int k = 0; k < o.iters; ++k) {
          const Mat P = mul(t.A, Z);
          Z = mul(Z, shift(13, mul(P, shift(15, mul(P, shift(7, P))))));
          for (double& x : Z.v) x *= 0.25;
        }
        O = mul(F, mul(Z, mul(Bm, t.vm)));
      }
      const int p = (o.kernel - 1) / 2;
      for (int i = 0; i < t.n; ++i)
        for (int k = 0; k < o.kernel; ++k) {
          const int j = i + k - p;
          if (j < 0 || j >= t.n) continue;
          for (int c = 0; c < a.dk; ++c) O(i, c) += a.params.values[0][static_cast<size_t>(h * o.kernel + k)] * t.vm(j, c);
        }
      const int64_t r0 = a.offsets[b];
      for (int i = 0; i < t.n; ++i)
        for (int c = 0; c < a.dk; ++c) out[static_cast<size_t>((r0 + i) * a.Q + h * a.dk + c)] = O(i, c);
    }
  return out;
}

// The settings that exercise each code path.
std::vector<nlohmann::json> settings() {
  return {{{"landmarks", 4}, {"conv_kernel", 5}},
          {{"landmarks", 4}, {"conv_kernel", 0}},
          {{"landmarks", 3}, {"conv_kernel", 35}, {"pinv_init", "batch"}},
          {{"landmarks", 5}, {"conv_kernel", 3}, {"pinv_iters", 0}},
          {{"landmarks", 64}, {"conv_kernel", 7}}};  // every example shorter: the exact fallback
}

}  // namespace

TEST_CASE("nystromformer gradients match finite differences", "[nystromformer][grad]") {
  // 23 and 13 rows are not multiples of the landmark counts, 5 rows give segments of one or two rows,
  // 1 row (and 5 rows with 4 or 5 landmarks) takes the exact fallback; rows 2, 9, 16, ... are masked,
  // among them the last rows of the first two examples (padding after the last real key).
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> a("nystromformer", 2, 4, {23, 5, 1, 13}, 23, hp);
    a.mask.assign(static_cast<size_t>(a.rows()), 1);
    for (int r : {2, 9, 16, 22, 27, 33, 35}) a.mask[static_cast<size_t>(r)] = 0;
    CHECK(attention_fd_error(a, 10, 80, 80) < kTol);
    mask_every(a, 1, 6);
    CHECK(attention_fd_error(a, 20, 80, 80) < kTol);
  }
}

TEST_CASE("nystromformer gradients without a key mask", "[nystromformer][grad]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> a("nystromformer", 3, 3, {17, 40, 2}, 40, hp);
    CHECK(attention_fd_error(a, 30, 80, 80) < kTol);
  }
}

TEST_CASE("nystromformer equals its formulas written plainly", "[nystromformer]") {
  auto all = settings();
  all.push_back({{"landmarks", 4}, {"pinv_iters", 12}});  // default conv_kernel 35, longer than every example
  all.push_back({{"landmarks", 8}, {"conv_kernel", 1}, {"pinv_init", "batch"}});
  for (const auto& hp : all) {
    INFO(hp.dump());
    AttnHarness<double> a("nystromformer", 3, 4, {40, 17, 64, 8, 3}, 64, hp);
    mask_every(a, 3, 5);
    a.qkv = randn(a.qkv.size(), 12, 1.5);
    a.forward();
    const auto want = reference(a, hp);
    CHECK(max_abs_diff(a.out, want) < 1e-12 * std::max(1.0, max_abs(want)));
    CHECK(max_abs(want) > 0.1);
  }
}

TEST_CASE("nystromformer is exact softmax attention when Q and K are constant over each segment",
          "[nystromformer]") {
  // Then F = E M, A = M, Bm = M E^T / l (E spreads the m segments over their l rows), so F pinv(A) Bm = E M E^T / l
  // is softmax(Q K^T / sqrt(dk)) exactly, once the iteration has converged: the softmax variant's output.
  for (int m : {3, 4, 6}) {
    INFO("landmarks " << m);
    const nlohmann::json hp = {{"landmarks", m}, {"conv_kernel", 0}, {"pinv_iters", 30}};
    AttnHarness<double> a("nystromformer", 2, 4, {24, 12}, 24, hp);
    AttnHarness<double> s("softmax", 2, 4, {24, 12}, 24);
    const auto seg = randn(a.qkv.size(), 40);
    a.qkv = randn(a.qkv.size(), 41);
    for (int b = 0; b < 2; ++b) {
      const int n = a.offsets[b + 1] - a.offsets[b];
      for (int i = 0; i < n; ++i) {
        const int64_t r = a.offsets[b] + i, first = a.offsets[b] + (i / (n / m)) * (n / m);
        for (int c = 0; c < 2 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] = seg[first * 3 * a.Q + c];
      }
    }
    s.qkv = a.qkv;
    a.forward();
    s.forward();
    CHECK(max_abs_diff(a.out, s.out) < 1e-12);
    CHECK(max_abs(s.out) > 0.1);
  }
}

TEST_CASE("nystromformer: a padded batch equals per-example runs", "[nystromformer][padding]") {
  // Example 0 is 30 real tokens padded to 40 (the last 10 keys masked, so it has 30 rows as alone), example
  // 1 is 25 tokens; outputs, q/k/v gradients and the conv weight's gradient (summed over the examples).
  for (const auto& hp : settings()) {
    if (hp.value("pinv_init", std::string()) == "batch") continue;  // couples the examples, by design
    INFO(hp.dump());
    AttnHarness<double> full("nystromformer", 2, 4, {40, 25}, 40, hp);
    full.qkv = randn(full.qkv.size(), 15);
    full.mask.assign(65, 1);
    for (int r = 30; r < 40; ++r) full.mask[r] = 0;
    full.mask[7] = full.mask[50] = 0;  // and a masked token inside each
    full.dout = randn(full.out.size(), 16);
    full.forward();
    full.backward();
    for (int r = 30; r < 40; ++r)
      for (int c = 0; c < full.Q; ++c) CHECK(full.out[r * full.Q + c] == 0.0);
    for (int r = 30; r < 40; ++r)
      for (int c = 0; c < 3 * full.Q; ++c) CHECK(full.dqkv[r * 3 * full.Q + c] == 0.0);
    const int starts[] = {0, 40}, lengths[] = {30, 25};
    std::vector<double> dw_sum;
    double worst = 0;
    for (int e = 0; e < 2; ++e) {
      AttnHarness<double> one("nystromformer", 2, 4, {lengths[e]}, 40, hp);
      const int64_t s0 = starts[e];
      for (size_t i = 0; i < one.qkv.size(); ++i) one.qkv[i] = full.qkv[s0 * 3 * full.Q + i];
      for (size_t i = 0; i < one.dout.size(); ++i) one.dout[i] = full.dout[s0 * full.Q + i];
      one.mask.assign(full.mask.begin() + s0, full.mask.begin() + s0 + lengths[e]);
      one.forward();
      one.backward();
      for (size_t i = 0; i < one.out.size(); ++i) worst = std::max(worst, std::fabs(one.out[i] - full.out[s0 * full.Q + i]));
      for (size_t i = 0; i < one.dqkv.size(); ++i)
        worst = std::max(worst, std::fabs(one.dqkv[i] - full.dqkv[s0 * 3 * full.Q + i]));
      if (!one.params.grads.empty()) {
        dw_sum.resize(one.params.grads[0].size(), 0.0);
        for (size_t i = 0; i < dw_sum.size(); ++i) dw_sum[i] += one.params.grads[0][i];
      }
    }
    CHECK(worst < 1e-12);
    if (!dw_sum.empty()) CHECK(max_abs_diff(dw_sum, full.params.grads[0]) < 1e-12 * std::max(1.0, max_abs(dw_sum)));
  }
}

TEST_CASE("nystromformer: masked keys contribute nothing", "[nystromformer][padding]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> a("nystromformer", 2, 4, {30, 20}, 32, hp);
    a.mask.assign(50, 1);
    const int hidden[] = {3, 17, 29, 35, 49};
    for (int r : hidden) a.mask[r] = 0;
    a.qkv = randn(a.qkv.size(), 22);
    a.dout = randn(a.out.size(), 23);
    a.forward();
    a.backward();
    const auto out = a.out;
    const auto dqkv = a.dqkv;
    const auto dw = a.params.grads;
    for (int r : hidden)
      for (int c = 0; c < 3 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] += 5.0;  // their queries, keys and values
    a.forward();
    a.backward();
    CHECK(max_abs_diff(a.out, out) < 1e-12);
    CHECK(max_abs_diff(a.dqkv, dqkv) < 1e-12);
    for (size_t i = 0; i < dw.size(); ++i) CHECK(max_abs_diff(a.params.grads[i], dw[i]) < 1e-12);
    for (int r : hidden)
      for (int c = 0; c < 3 * a.Q; ++c) CHECK(a.dqkv[r * 3 * a.Q + c] == 0.0);
  }
}

TEST_CASE("nystromformer: an example with every key masked gives zeros", "[nystromformer][padding]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> a("nystromformer", 2, 3, {12, 9, 6}, 12, hp);
    a.mask.assign(27, 1);
    for (int r = 12; r < 21; ++r) a.mask[r] = 0;
    a.qkv = randn(a.qkv.size(), 15);
    a.dout = randn(a.out.size(), 16);
    a.forward();
    a.backward();
    for (double x : a.out) CHECK(std::isfinite(x));
    for (double x : a.dqkv) CHECK(std::isfinite(x));
    for (int64_t r = 12; r < 21; ++r) {
      for (int c = 0; c < a.Q; ++c) CHECK(a.out[r * a.Q + c] == 0.0);
      for (int c = 0; c < 3 * a.Q; ++c) CHECK(a.dqkv[r * 3 * a.Q + c] == 0.0);
    }
  }
}

TEST_CASE("nystromformer in float agrees with double", "[nystromformer]") {
  for (const auto& hp : settings()) {
    INFO(hp.dump());
    AttnHarness<double> d("nystromformer", 2, 8, {200, 77}, 200, hp);
    AttnHarness<float> f("nystromformer", 2, 8, {200, 77}, 200, hp);
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

TEST_CASE("nystromformer declares its conv weight like torch's Conv2d", "[nystromformer]") {
  AttnHarness<double> a("nystromformer", 3, 4, {10}, 10, {{"conv_kernel", 9}});
  const auto specs = a.attn->param_specs();
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].name == "conv");
  CHECK(specs[0].shape == std::vector<int>{3, 9});
  CHECK(specs[0].init == Init::Uniform);
  CHECK(specs[0].scale == Approx(1.0 / 3.0));
  AttnHarness<double> none("nystromformer", 3, 4, {10}, 10, {{"conv_kernel", 0}});
  CHECK(none.attn->param_specs().empty());
}

TEST_CASE("nystromformer hyperparameter errors are clear", "[nystromformer]") {
  auto make = [](const nlohmann::json& hp) { AttnHarness<double> a("nystromformer", 2, 4, {10}, 10, hp); };
  CHECK_THROWS_WITH(make({{"causal", true}}), Catch::Contains("nystromformer' has no causal mode"));
  CHECK_THROWS_WITH(make({{"landmarks", 0}}), Catch::Contains("landmarks must be at least 1, got 0"));
  CHECK_THROWS_WITH(make({{"landmarks", 2.5}}), Catch::Contains("landmarks must be an integer, got 2.5"));
  CHECK_THROWS_WITH(make({{"pinv_iters", -1}}), Catch::Contains("pinv_iters must be 0 or more, got -1"));
  CHECK_THROWS_WITH(make({{"conv_kernel", 4}}), Catch::Contains("conv_kernel must be odd"));
  CHECK_THROWS_WITH(make({{"conv_kernel", -3}}), Catch::Contains("conv_kernel must be odd"));
  CHECK_THROWS_WITH(make({{"pinv_init", "global"}}), Catch::Contains("pinv_init must be 'example'"));
  CHECK_THROWS_WITH(make({{"pinv_iter", 3}}), Catch::Contains("has no hyperparameter 'pinv_iter'"));
  CHECK_NOTHROW(make({{"landmarks", 1}, {"pinv_iters", 0}, {"conv_kernel", 0}, {"pinv_init", "batch"}}));
}

TEST_CASE("nystromformer: an example longer than planned is an error", "[nystromformer]") {
  AttnHarness<double> a("nystromformer", 1, 2, {4, 4}, 4, {{"landmarks", 2}});
  a.offsets = {0, 8};
  CHECK_THROWS_WITH(a.forward(), Catch::Contains("example 0 has 8 rows; attention was planned for at most 4"));
}

TEST_CASE("nystromformer's segment and tap arithmetic (shared with the GPU)", "[nystromformer]") {
  for (int m : {1, 2, 3, 7, 64})
    for (int n = m + 1; n < m + 300; n += 7) {
      CHECK(nystrom_segment_start(0, n, m) == 0);
      CHECK(nystrom_segment_start(m, n, m) == n);
      for (int i = 0; i < n; ++i) {
        const int j = nystrom_segment_of(i, n, m);
        INFO("m " << m << " n " << n << " row " << i << " segment " << j);
        REQUIRE(j >= 0);
        REQUIRE(j < m);
        CHECK(nystrom_segment_start(j, n, m) <= i);
        CHECK(i < nystrom_segment_start(j + 1, n, m));
      }
    }
  for (int kernel : {1, 3, 35})
    for (int n : {1, 2, 5, 40})
      for (int t = 0; t < kernel; ++t) {
        const int off = nystrom_tap_offset(t, kernel);
        CHECK(off == t - (kernel - 1) / 2);
        int i0 = 0, i1 = 0;
        nystrom_tap_rows(off, n, &i0, &i1);
        for (int i = 0; i < n; ++i) CHECK((i >= i0 && i < i1) == (i + off >= 0 && i + off < n));
      }
}
