// Performer's random features: the orthogonal draw, the redraw policy, and FAVOR+ converging to exact
// softmax attention as the feature count grows (orthogonal features faster than i.i.d. ones).
#include <catch2/catch.hpp>
#include <cmath>

#include "attn/random_features.h"
#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

double row_dot(const std::vector<double>& w, int d, int a, int b) {
  double s = 0;
  for (int j = 0; j < d; ++j) s += w[static_cast<size_t>(a) * d + j] * w[static_cast<size_t>(b) * d + j];
  return s;
}

// Mean over rows of |o - o_softmax| / |o_softmax| for one performer draw (the draw of `seed`).
double performer_error(int m, bool orthogonal, uint64_t seed, const std::vector<double>& qkv,
                       const std::vector<double>& exact) {
  AttnHarness<double> p("performer", 1, 16, {128}, 128, {{"features", m}, {"orthogonal", orthogonal}});
  p.qkv = qkv;
  p.step.seed = seed;
  p.forward();
  double total = 0;
  for (int r = 0; r < 128; ++r) {
    double diff = 0, norm = 0;
    for (int c = 0; c < 16; ++c) {
      diff += std::pow(p.out[r * 16 + c] - exact[r * 16 + c], 2);
      norm += std::pow(exact[r * 16 + c], 2);
    }
    total += std::sqrt(diff / norm);
  }
  return total / 128;
}

}  // namespace

TEST_CASE("orthogonal random features are orthogonal within blocks and Gaussian in norm", "[performer]") {
  const int d = 8, m = 20;  // two full blocks and 4 rows of a third
  const auto w = draw_projection(m, d, true, 7, 0, 0);
  REQUIRE(w.size() == static_cast<size_t>(m * d));
  for (int a = 0; a < m; ++a)
    for (int b = a + 1; b < m; ++b)
      if (a / d == b / d) CHECK(std::fabs(row_dot(w, d, a, b)) < 1e-12);
  // The same (seed, layer, draw) gives the same matrix; another layer or draw does not.
  CHECK(draw_projection(m, d, true, 7, 0, 0) == w);
  CHECK(draw_projection(m, d, true, 7, 1, 0) != w);
  CHECK(draw_projection(m, d, true, 7, 0, 1) != w);
  // Rows are N(0, I_d) in law: squared norms average d (chi-square), entries have variance 1.
  const auto big = draw_projection(4096, 16, true, 3, 0, 0);
  double norm2 = 0, second = 0;
  for (int r = 0; r < 4096; ++r) norm2 += row_dot(big, 16, r, r);
  for (double v : big) second += v * v;
  CHECK(norm2 / 4096 == Approx(16.0).epsilon(0.03));
  CHECK(second / big.size() == Approx(1.0).epsilon(0.03));
  // i.i.d. features are not orthogonal.
  const auto iid = draw_projection(m, d, false, 7, 0, 0);
  CHECK(std::fabs(row_dot(iid, d, 0, 1)) > 1e-6);
}

TEST_CASE("the redraw policy", "[performer]") {
  const auto step = RedrawPolicy::parse("step");
  const auto every = RedrawPolicy::parse("interval:100");
  const auto never = RedrawPolicy::parse("never");
  CHECK(step.draw(0) == 0);
  CHECK(step.draw(7) == 7);
  CHECK(every.draw(99) == 0);
  CHECK(every.draw(100) == 1);
  CHECK(never.draw(12345) == 0);
  for (const char* bad : {"sometimes", "interval:", "interval:0", "interval:-3", "interval:5x"})
    CHECK_THROWS_WITH(RedrawPolicy::parse(bad), Catch::Contains("use step, interval:N"));
}

TEST_CASE("performer features follow the redraw policy of the training step", "[performer]") {
  auto outputs = [](const std::string& redraw, int64_t step) {
    AttnHarness<double> a("performer", 2, 4, {20}, 20, {{"features", 8}, {"redraw", redraw}});
    a.qkv = randn(a.qkv.size(), 31);
    a.step = AttnStep{true, 42, 0, step};
    a.forward();
    return a.out;
  };
  CHECK(outputs("step", 3) == outputs("step", 3));
  CHECK(outputs("step", 3) != outputs("step", 4));
  CHECK(outputs("interval:10", 3) == outputs("interval:10", 9));
  CHECK(outputs("interval:10", 9) != outputs("interval:10", 10));
  CHECK(outputs("never", 0) == outputs("never", 1000));
}

TEST_CASE("performer's error against softmax shrinks as the feature count grows", "[performer]") {
  AttnHarness<double> s("softmax", 1, 16, {128}, 128);
  s.qkv = randn(s.qkv.size(), 40, 0.5);
  s.forward();
  const int draws = 6;
  std::vector<double> mean_err;
  for (int m : {16, 64, 256, 1024}) {
    double e = 0;
    for (int k = 0; k < draws; ++k) e += performer_error(m, true, 100 + k, s.qkv, s.out);
    mean_err.push_back(e / draws);
  }
  INFO("mean relative error at m = 16, 64, 256, 1024: " << mean_err[0] << " " << mean_err[1] << " "
                                                          << mean_err[2] << " " << mean_err[3]);
  for (size_t i = 1; i < mean_err.size(); ++i) CHECK(mean_err[i] < mean_err[i - 1]);
  CHECK(mean_err[3] < 0.5 * mean_err[1]);
}

TEST_CASE("orthogonal features beat i.i.d. features at equal m on average", "[performer]") {
  AttnHarness<double> s("softmax", 1, 16, {128}, 128);
  s.qkv = randn(s.qkv.size(), 41, 0.5);
  s.forward();
  const int draws = 12;
  for (int m : {16, 64}) {
    double ortho = 0, iid = 0;
    for (int k = 0; k < draws; ++k) {
      ortho += performer_error(m, true, 200 + k, s.qkv, s.out);
      iid += performer_error(m, false, 200 + k, s.qkv, s.out);
    }
    INFO("m = " << m << ": orthogonal " << ortho / draws << ", iid " << iid / draws);
    CHECK(ortho < iid);
  }
}
