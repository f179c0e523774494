// Sparse Sinkhorn attention: finite-difference gradients (q, k, v and every sort-net weight) for each
// option, equality with a plain reference (sort net, Sinkhorn balancing in ordinary space, explicit
// sorted keys, softmax over the union of the local and sorted keys), padding and masking, errors.
#include <catch2/catch.hpp>
#include <cmath>

#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kTol = 1e-6;

// Small blocks so examples span several of them.
nlohmann::json opts(const std::string& net, const std::string& act, const std::string& combine, int iters = 3,
                    double temp = 0.7) {
  return {{"block", 4},           {"max_blocks", 6}, {"sort_net", net}, {"sort_activation", act},
          {"sinkhorn_iters", iters}, {"temperature", temp}, {"combine", combine}};
}

std::vector<nlohmann::json> all_options() {
  std::vector<nlohmann::json> v;
  for (const char* net : {"mlp", "linear"})
    for (const char* act : {"sinkhorn", "softmax"})
      for (const char* combine : {"joint", "sum"}) v.push_back(opts(net, act, combine));
  return v;
}

void mask_rows(AttnHarness<double>& a, const std::vector<int>& hidden) {
  a.mask.assign(static_cast<size_t>(a.rows()), 1);
  for (int r : hidden) a.mask[static_cast<size_t>(r)] = 0;
}

// Sort-net weights drawn at scale 0.5, then qkv and every weight by central differences; every weight
// must get some gradient.
double fd_error(AttnHarness<double>& a, uint64_t seed) {
  randomise_weights(a, seed + 100, 0.5);
  const double worst = attention_fd_error(a, seed, 80, 60);
  for (size_t i = 0; i < a.params.values.size(); ++i) {
    INFO("learned weight " << a.attn->param_specs()[i].name);
    CHECK(max_abs(a.params.grads[i]) > 1e-6);
  }
  return worst;
}

using Vec = std::vector<double>;

// The plain form of example b, head h: block sums, the sort net, Sinkhorn balancing by dividing rows and
// columns by their sums, the sorted keys and values as explicit weighted sums, and per query a softmax
// over the union of its block's real keys and the seen sorted slots (or one softmax over each, added).
std::vector<double> reference(AttnHarness<double>& a, const nlohmann::json& hp, int b, int h) {
  const int w = hp["block"], mb = hp["max_blocks"], iters = hp["sinkhorn_iters"], d = a.dk;
  const double temp = hp["temperature"];
  const bool mlp = hp["sort_net"] == "mlp", balance = hp["sort_activation"] == "sinkhorn",
             joint = hp["combine"] == "joint";
  const int64_t r0 = a.offsets[b];
  const int n = a.offsets[b + 1] - a.offsets[b], nb = (n + w - 1) / w;
  auto real = [&](int r) { return r < n && (a.mask.empty() || a.mask[r0 + r] != 0); };
  auto vec = [&](int which, int r) {
    Vec x(d, 0.0);
    if (which == 0 || real(r))
      for (int c = 0; c < d; ++c) x[c] = a.at(which, r0 + r, h, c);
    return x;
  };
  std::vector<bool> active(nb, false);
  std::vector<Vec> s(nb, Vec(d, 0.0));
  for (int m = 0; m < nb; ++m)
    for (int j = 0; j < w; ++j)
      if (real(m * w + j)) {
        active[m] = true;
        const Vec k = vec(1, m * w + j);
        for (int c = 0; c < d; ++c) s[m][c] += k[c];
      }
  const auto& P = a.params.values;
  std::vector<Vec> M(nb, Vec(nb, 0.0));
  for (int m = 0; m < nb; ++m) {
    Vec hid(d, 0.0);
    if (mlp)
      for (int c = 0; c < d; ++c) {
        double z = P[1][h * d + c];
        for (int i = 0; i < d; ++i) z += s[m][i] * P[0][(h * d + i) * d + c];
        hid[c] = std::max(z, 0.0);
      }
    for (int l = 0; l < nb; ++l) {
      double r = 0;
      if (mlp) {
        r = P[3][h * mb + l];
        for (int c = 0; c < d; ++c) r += hid[c] * P[2][(h * d + c) * mb + l];
        r = std::max(r, 0.0);
      } else {
        for (int i = 0; i < d; ++i) r += s[m][i] * P[0][i * mb + l];
      }
      if (active[m] && active[l]) M[m][l] = std::exp(r / temp);
    }
  }
  auto normalise_columns = [&] {
    for (int l = 0; l < nb; ++l) {
      double z = 0;
      for (int m = 0; m < nb; ++m) z += M[m][l];
      if (z > 0)
        for (int m = 0; m < nb; ++m) M[m][l] /= z;
    }
  };
  if (balance) {
    for (int it = 0; it < iters; ++it) {
      for (int m = 0; m < nb; ++m) {
        double z = 0;
        for (int l = 0; l < nb; ++l) z += M[m][l];
        if (z > 0)
          for (int l = 0; l < nb; ++l) M[m][l] /= z;
      }
      normalise_columns();
    }
  } else {
    normalise_columns();
  }
  std::vector<bool> seen(w, false);
  for (int r = 0; r < nb * w; ++r)
    if (real(r)) seen[r % w] = true;
  Vec o(static_cast<size_t>(n) * d, 0.0);
  for (int i = 0; i < n; ++i) {
    const int l = i / w;
    if (!active[l]) continue;
    const Vec q = vec(0, i);
    std::vector<Vec> keys, vals;
    std::vector<int> group;
    for (int j = l * w; j < (l + 1) * w; ++j)
      if (real(j)) {
        keys.push_back(vec(1, j));
        vals.push_back(vec(2, j));
        group.push_back(0);
      }
    for (int j = 0; j < w; ++j) {
      if (!seen[j]) continue;
      Vec k(d, 0.0), v(d, 0.0);
      for (int m = 0; m < nb; ++m) {
        const Vec km = vec(1, m * w + j), vm = vec(2, m * w + j);
        for (int c = 0; c < d; ++c) {
          k[c] += M[m][l] * km[c];
          v[c] += M[m][l] * vm[c];
        }
      }
      keys.push_back(k);
      vals.push_back(v);
      group.push_back(joint ? 0 : 1);
    }
    for (int gr = 0; gr < 2; ++gr) {
      std::vector<double> sc;
      double mx = -INFINITY;
      for (size_t t = 0; t < keys.size(); ++t) {
        double x = 0;
        for (int c = 0; c < d; ++c) x += q[c] * keys[t][c];
        sc.push_back(x / std::sqrt(d));
        if (group[t] == gr) mx = std::max(mx, sc.back());
      }
      double z = 0;
      for (size_t t = 0; t < keys.size(); ++t)
        if (group[t] == gr) z += std::exp(sc[t] - mx);
      for (size_t t = 0; t < keys.size(); ++t)
        if (group[t] == gr)
          for (int c = 0; c < d; ++c) o[i * d + c] += std::exp(sc[t] - mx) / z * vals[t][c];
    }
  }
  return o;
}

double max_err_vs_reference(AttnHarness<double>& a, const nlohmann::json& hp) {
  double worst = 0;
  for (int b = 0; b + 1 < static_cast<int>(a.offsets.size()); ++b)
    for (int h = 0; h < a.H; ++h) {
      const auto o = reference(a, hp, b, h);
      const int n = a.offsets[b + 1] - a.offsets[b];
      for (int i = 0; i < n; ++i)
        for (int c = 0; c < a.dk; ++c)
          worst = std::max(worst, std::fabs(o[i * a.dk + c] - a.out_at(a.offsets[b] + i, h, c)));
    }
  return worst;
}

}  // namespace

TEST_CASE("sinkhorn gradients match finite differences for every option", "[sinkhorn][grad]") {
  // Lengths 13, 1, 9, 7 with blocks of 4 (partial last blocks, a one-row example); example 0's second block
  // is hidden entirely (it takes no part in the sort) and a few other keys are hidden.
  for (const auto& hp : all_options()) {
    INFO(hp.dump());
    AttnHarness<double> a("sinkhorn", 2, 3, {13, 1, 9, 7}, 13, hp);
    mask_rows(a, {4, 5, 6, 7, 11, 16, 26});
    CHECK(fd_error(a, 30) < kTol);
  }
}

TEST_CASE("sinkhorn gradients with attention dropout and with one Sinkhorn step", "[sinkhorn][grad]") {
  for (const char* combine : {"joint", "sum"}) {
    INFO(combine);
    AttnHarness<double> a("sinkhorn", 2, 3, {11, 6}, 11, opts("mlp", "sinkhorn", combine, 1, 1.0), 0.25f);
    mask_rows(a, {2, 13});
    a.step = AttnStep{true, 99, 4, 0};
    CHECK(fd_error(a, 31) < kTol);
  }
}

TEST_CASE("sinkhorn equals its plain form (union of local and sorted keys)", "[sinkhorn]") {
  for (const auto& hp : all_options()) {
    INFO(hp.dump());
    AttnHarness<double> a("sinkhorn", 3, 4, {22, 17, 3, 1}, 22, hp);
    mask_rows(a, {1, 8, 9, 10, 11, 30, 39, 41});
    randomise_weights(a, 40, 0.5);
    a.qkv = randn(a.qkv.size(), 41, 1.5);
    a.forward();
    CHECK(max_err_vs_reference(a, hp) < 1e-12);
  }
  // The defaults (blocks of 50: one example of 120 rows has 3), against the same plain form.
  // max_blocks 0 resolves to the 3 blocks of the longest example.
  nlohmann::json def = {{"block", 50}, {"max_blocks", 3}, {"sort_net", "mlp"}, {"sort_activation", "sinkhorn"},
                        {"sinkhorn_iters", 1}, {"temperature", 1.0}, {"combine", "joint"}};
  AttnHarness<double> a("sinkhorn", 2, 4, {120, 37}, 120);
  randomise_weights(a, 42, 0.5);
  a.qkv = randn(a.qkv.size(), 43);
  a.forward();
  CHECK(max_err_vs_reference(a, def) < 1e-12);
}

TEST_CASE("sinkhorn with one block is softmax attention over the block", "[sinkhorn]") {
  // Pi = 1: the sorted block is the block itself, and one softmax over two copies of each key is the
  // softmax over the keys.
  AttnHarness<double> s("sinkhorn", 2, 4, {9, 30}, 30);
  AttnHarness<double> f("softmax", 2, 4, {9, 30}, 30);
  s.qkv = randn(s.qkv.size(), 44);
  f.qkv = s.qkv;
  s.mask = f.mask = std::vector<uint8_t>(39, 1);
  s.mask[3] = f.mask[3] = s.mask[20] = f.mask[20] = 0;
  s.forward();
  f.forward();
  CHECK(max_abs_diff(s.out, f.out) < 1e-12);
}

TEST_CASE("a sinkhorn batch equals per-example runs, padded or not", "[sinkhorn][padding]") {
  for (const auto& hp : {opts("mlp", "sinkhorn", "joint"), opts("linear", "softmax", "sum")}) {
    INFO(hp.dump());
    // Example 0: 14 real rows then 10 hidden (blocks of 4: two whole trailing blocks hidden);
    // example 1: 9 rows with key 3 hidden. Each alone, unpadded.
    AttnHarness<double> full("sinkhorn", 2, 3, {24, 9}, 24, hp);
    randomise_weights(full, 50, 0.5);
    full.qkv = randn(full.qkv.size(), 51);
    mask_rows(full, {14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 27});
    full.dout = randn(full.out.size(), 52);
    for (int r = 14; r < 24; ++r)
      for (int c = 0; c < full.Q; ++c) full.dout[r * full.Q + c] = 0.0;  // padded rows are never pooled
    full.forward();
    full.backward();
    std::vector<Vec> wsum(full.params.values.size());
    for (size_t i = 0; i < wsum.size(); ++i) wsum[i].assign(full.params.values[i].size(), 0.0);
    const int starts[] = {0, 24}, lengths[] = {14, 9};
    for (int e = 0; e < 2; ++e) {
      AttnHarness<double> one("sinkhorn", 2, 3, {lengths[e]}, 24, hp);
      for (size_t i = 0; i < wsum.size(); ++i)
        std::copy(full.params.values[i].begin(), full.params.values[i].end(), one.params.values[i].begin());
      const int64_t s0 = starts[e];
      for (size_t i = 0; i < one.qkv.size(); ++i) one.qkv[i] = full.qkv[s0 * 3 * full.Q + i];
      for (size_t i = 0; i < one.dout.size(); ++i) one.dout[i] = full.dout[s0 * full.Q + i];
      if (e == 1) mask_rows(one, {3});
      one.forward();
      one.backward();
      double worst = 0;
      for (size_t i = 0; i < one.out.size(); ++i) worst = std::max(worst, std::fabs(one.out[i] - full.out[s0 * full.Q + i]));
      for (size_t i = 0; i < one.dqkv.size(); ++i)
        worst = std::max(worst, std::fabs(one.dqkv[i] - full.dqkv[s0 * 3 * full.Q + i]));
      CHECK(worst < 1e-12);
      for (size_t i = 0; i < wsum.size(); ++i)
        for (size_t k = 0; k < wsum[i].size(); ++k) wsum[i][k] += one.params.grads[i][k];
    }
    for (size_t i = 0; i < wsum.size(); ++i) CHECK(max_abs_diff(wsum[i], full.params.grads[i]) < 1e-12);
    // Hidden keys and values get no gradient; the hidden trailing blocks' queries output 0.
    for (int r = 14; r < 24; ++r) {
      for (int c = full.Q; c < 3 * full.Q; ++c) CHECK(full.dqkv[r * 3 * full.Q + c] == 0.0);
      if (r >= 16)
        for (int c = 0; c < full.Q; ++c) CHECK(full.out[r * full.Q + c] == 0.0);
    }
  }
}

TEST_CASE("sinkhorn: hidden keys have no influence, an all-hidden example gives zeros", "[sinkhorn][padding]") {
  for (const auto& hp : all_options()) {
    INFO(hp.dump());
    AttnHarness<double> a("sinkhorn", 2, 3, {15, 10, 5}, 15, hp);
    randomise_weights(a, 60, 0.5);
    mask_rows(a, {2, 4, 5, 6, 7, 14, 19, 25, 26, 27, 28, 29});  // example 2 entirely hidden
    a.qkv = randn(a.qkv.size(), 61);
    a.dout = randn(a.out.size(), 62);
    a.forward();
    a.backward();
    const auto out = a.out, dqkv = a.dqkv;
    const auto grads = a.params.grads;
    for (int r : {2, 4, 5, 6, 7, 14, 19, 25, 26, 27, 28, 29})
      for (int c = a.Q; c < 3 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] += 5.0;  // change the hidden keys and values
    a.forward();
    a.backward();
    CHECK(max_abs_diff(a.out, out) < 1e-12);
    CHECK(max_abs_diff(a.dqkv, dqkv) < 1e-12);
    for (size_t i = 0; i < grads.size(); ++i) CHECK(max_abs_diff(a.params.grads[i], grads[i]) < 1e-12);
    for (double x : a.out) CHECK(std::isfinite(x));
    for (double x : a.dqkv) CHECK(std::isfinite(x));
    for (int64_t r = 25; r < 30; ++r) {
      for (int c = 0; c < a.Q; ++c) CHECK(a.out[r * a.Q + c] == 0.0);
      for (int c = 0; c < 3 * a.Q; ++c) CHECK(a.dqkv[r * 3 * a.Q + c] == 0.0);
    }
  }
}

TEST_CASE("sinkhorn's weight gradients are the same bits on every run", "[sinkhorn]") {
  nlohmann::json hp = opts("mlp", "sinkhorn", "joint");
  hp["max_blocks"] = 10;
  AttnHarness<double> a("sinkhorn", 3, 4, {40, 33, 12, 29, 7}, 40, hp);
  randomise_weights(a, 70, 0.5);
  a.qkv = randn(a.qkv.size(), 71);
  a.dout = randn(a.out.size(), 72);
  a.forward();
  a.backward();
  const auto grads = a.params.grads;
  for (int run = 0; run < 5; ++run) {
    a.backward();
    for (size_t i = 0; i < grads.size(); ++i) CHECK(a.params.grads[i] == grads[i]);
  }
}

TEST_CASE("sinkhorn float agrees with double", "[sinkhorn]") {
  for (const auto& hp : {opts("mlp", "sinkhorn", "joint", 2, 1.0), opts("linear", "softmax", "sum", 1, 1.0)}) {
    nlohmann::json h = hp;
    h["block"] = 16;
    h["max_blocks"] = 13;
    INFO(h.dump());
    AttnHarness<double> d("sinkhorn", 2, 8, {200, 77}, 200, h);
    AttnHarness<float> f("sinkhorn", 2, 8, {200, 77}, 200, h);
    for (size_t i = 0; i < d.params.values.size(); ++i)
      std::copy(d.params.values[i].begin(), d.params.values[i].end(), f.params.values[i].begin());
    d.qkv = randn(d.qkv.size(), 80);
    f.qkv = cast<float>(d.qkv);
    d.dout = randn(d.out.size(), 81);
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
    for (size_t i = 0; i < d.params.grads.size(); ++i) {
      double e = 0;
      for (size_t k = 0; k < d.params.grads[i].size(); ++k)
        e = std::max(e, std::fabs(d.params.grads[i][k] - f.params.grads[i][k]));
      CHECK(e < 1e-3 * std::max(1.0, max_abs(d.params.grads[i])));
    }
  }
}

TEST_CASE("sinkhorn's learned weights", "[sinkhorn]") {
  AttnHarness<double> m("sinkhorn", 3, 4, {10}, 10);
  const auto specs = m.attn->param_specs();
  REQUIRE(specs.size() == 4);
  CHECK(specs[0].name == "sort_w1");
  CHECK(specs[0].shape == std::vector<int>{3, 4, 4});
  CHECK(specs[1].shape == std::vector<int>{3, 4});
  CHECK(specs[2].name == "sort_w2");
  CHECK(specs[2].shape == std::vector<int>{3, 4, 1});  // max_blocks 0: the one block 10 rows need
  CHECK(specs[3].shape == std::vector<int>{3, 1});
  AttnHarness<double> l("sinkhorn", 3, 4, {10}, 10, {{"sort_net", "linear"}, {"max_blocks", 25}});
  REQUIRE(l.attn->param_specs().size() == 1);
  CHECK(l.attn->param_specs()[0].name == "sort_w");
  CHECK(l.attn->param_specs()[0].shape == std::vector<int>{4, 25});
}

TEST_CASE("sinkhorn hyperparameter errors", "[sinkhorn]") {
  auto make = [](nlohmann::json hp, int len = 10) { AttnHarness<double>("sinkhorn", 1, 2, {len}, len, hp); };
  CHECK_THROWS_WITH(make({{"causal", true}}), Catch::Contains("sinkhorn' has no causal mode: its sorted blocks mix keys"));
  CHECK_THROWS_WITH(make({{"block", 0}}), Catch::Contains("block must be an integer in [1, 65536], got 0"));
  CHECK_THROWS_WITH(make({{"block", 2.5}}), Catch::Contains("block must be an integer"));
  CHECK_THROWS_WITH(make({{"max_blocks", -1}}), Catch::Contains("max_blocks must be an integer"));
  CHECK_THROWS_WITH(make({{"sinkhorn_iters", 0}}), Catch::Contains("sinkhorn_iters must be an integer in [1, 100]"));
  CHECK_THROWS_WITH(make({{"temperature", 0}}), Catch::Contains("temperature must be a positive number"));
  CHECK_THROWS_WITH(make({{"sort_net", "conv"}}), Catch::Contains("sort_net must be \"mlp\""));
  CHECK_THROWS_WITH(make({{"sort_activation", "gumbel_sinkhorn"}}), Catch::Contains("sort_activation must be"));
  CHECK_THROWS_WITH(make({{"combine", "concat"}}), Catch::Contains("combine must be \"joint\""));
  // 2001 rows (ListOps with CLS) in blocks of 50 make 41 blocks: more than LRA's 25 sort outputs; the
  // default (0) sizes the sort net for them.
  CHECK_NOTHROW(make({}, 2001));
  CHECK_THROWS_WITH(make({{"max_blocks", 25}}, 2001),
                    Catch::Contains("examples of up to 2001 rows make 41 blocks of block=50, more than max_blocks=25") &&
                        Catch::Contains("set max_blocks >= 41 or block >= 81"));
  CHECK_NOTHROW(make({{"max_blocks", 41}}, 2001));
}
