// Reformer LSH attention: finite-difference gradients for each option (the hash is fixed by the step, and
// the test checks that no finite-difference step can flip a bucket), equality with a dense reference that
// rebuilds the same hash from the same RNG draw and the same key lists written plainly, the cases that
// need no hash (one chunk holding every key is softmax over unit-normalised keys), padding against
// per-example runs, masked keys, causality, float against double and the hyperparameter errors.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>

#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kTol = 1e-6;

// The settings of the reformer, with the defaults of its info.params.
struct Settings {
  bool causal = false;
  int hashes = 1, buckets = 10, chunk = 0, before = 1;
  bool self_mask = true, norm_keys = true, code_scale = false;
  nlohmann::json hp() const {
    return {{"causal", causal},       {"hashes", hashes},       {"buckets", buckets},
            {"chunk", chunk},         {"chunks_before", before}, {"self_mask", self_mask},
            {"norm_keys", norm_keys}, {"code_logit_scale", code_scale}};
  }
};

// One setting per code path: the defaults, causal, LRA's code (no self mask, raw keys, sqrt(dk) scale),
// several rounds whose chunks wrap across rounds, a fixed chunk length without previous chunks, and
// causal with rounds.
std::vector<Settings> settings() {
  std::vector<Settings> v(6);
  v[1].causal = true;
  v[2].self_mask = false;
  v[2].norm_keys = false;
  v[2].code_scale = true;
  v[3].hashes = 3;
  v[3].buckets = 4;
  v[3].before = 2;
  v[4].chunk = 7;
  v[4].before = 0;
  v[5].causal = true;
  v[5].hashes = 2;
  v[5].chunk = 5;
  v[5].buckets = 6;
  return v;
}

// Round r's rotations as the variant draws them: dk x buckets/2 normals, row-major, from the stream
// 0x52 << 56 | layer << 40 | r << 32 | step (lib/attn/reformer.cpp, rotation_stream).
std::vector<double> rotations(const AttnStep& step, int layer, int r, int dk, int half) {
  Rng rng(step.seed, (0x52ull << 56) | (static_cast<uint64_t>(layer) << 40) | (static_cast<uint64_t>(r) << 32) |
                         static_cast<uint64_t>(step.step));
  std::vector<double> R(static_cast<size_t>(dk) * half);
  for (double& x : R) x = rng.normal();
  return R;
}

// The rows of example b, head h.
struct Slice {
  int n;
  std::vector<std::vector<double>> q, v;
  std::vector<bool> real;
};

Slice slice(AttnHarness<double>& a, int b, int h) {
  Slice s;
  const int64_t r0 = a.offsets[b];
  s.n = a.offsets[b + 1] - a.offsets[b];
  for (int i = 0; i < s.n; ++i) {
    std::vector<double> q(a.dk), v(a.dk);
    for (int c = 0; c < a.dk; ++c) {
      q[c] = a.at(0, r0 + i, h, c);
      v[c] = a.at(2, r0 + i, h, c);
    }
    s.q.push_back(q);
    s.v.push_back(v);
    s.real.push_back(a.mask.empty() || a.mask[r0 + i] != 0);
  }
  return s;
}

// bucket[r][i] = argmax over the 2 half values [x R | -x R] (the first maximum); `margin` becomes the
// smallest gap between the best and the second best value over all rows and rounds.
std::vector<std::vector<int>> plain_buckets(const Slice& s, const Settings& st, const AttnStep& step, int dk,
                                            double* margin) {
  const int half = st.buckets / 2;
  std::vector<std::vector<int>> bucket(st.hashes, std::vector<int>(s.n));
  for (int r = 0; r < st.hashes; ++r) {
    const auto R = rotations(step, 0, r, dk, half);
    for (int i = 0; i < s.n; ++i) {
      std::vector<double> y(2 * half, 0.0);
      for (int k = 0; k < half; ++k) {
        for (int f = 0; f < dk; ++f) y[k] += s.q[i][f] * R[f * half + k];
        y[half + k] = -y[k];
      }
      int best = 0;
      for (int k = 1; k < 2 * half; ++k)
        if (y[k] > y[best]) best = k;
      double second = -INFINITY;
      for (int k = 0; k < 2 * half; ++k)
        if (k != best) second = std::max(second, y[k]);
      if (margin != nullptr) *margin = std::min(*margin, y[best] - second);
      bucket[r][i] = best;
    }
  }
  return bucket;
}

// The dense reference of (b, h): each query's list of (round, key) entries built plainly from the hash,
// then one softmax over the list. Returns n x dk.
std::vector<double> reference(AttnHarness<double>& a, const Settings& st, int b, int h, double* margin = nullptr) {
  const Slice s = slice(a, b, h);
  const int dk = a.dk;
  std::vector<double> out(static_cast<size_t>(s.n) * dk, 0.0);
  const auto bucket = plain_buckets(s, st, a.step, dk, margin);
  std::vector<int> visible;
  for (int i = 0; i < s.n; ++i)
    if (s.real[i]) visible.push_back(i);
  const int m = static_cast<int>(visible.size());
  if (m == 0) return out;
  const int c = st.chunk > 0 ? std::min(st.chunk, m) : (m + st.buckets - 1) / st.buckets;
  const int nc = (m + c - 1) / c, G = st.hashes * nc, kb = std::min(st.before, G - 1);
  // pi[r]: the visible positions sorted by (bucket, position).
  std::vector<std::vector<int>> pi(st.hashes, visible);
  for (int r = 0; r < st.hashes; ++r)
    std::sort(pi[r].begin(), pi[r].end(), [&](int x, int y) {
      return std::make_pair(bucket[r][x], x) < std::make_pair(bucket[r][y], y);
    });
  std::vector<std::vector<double>> khat(s.n);
  for (int j = 0; j < s.n; ++j) {
    double norm = 0;
    for (double x : s.q[j]) norm += x * x;
    norm = std::sqrt(norm);
    for (double x : s.q[j]) khat[j].push_back(st.norm_keys ? x / norm : x);
  }
  const double tau = st.code_scale ? std::sqrt(dk) : 1.0 / std::sqrt(dk);
  for (int i = 0; i < s.n; ++i) {
    std::vector<int> entries;
    for (int r = 0; r < st.hashes; ++r) {
      int rank = 0;  // visible keys before (bucket, i)
      for (int j : visible)
        if (std::make_pair(bucket[r][j], j) < std::make_pair(bucket[r][i], i)) ++rank;
      const int t = std::min(rank / c, nc - 1);
      for (int k = 0; k <= kb; ++k) {
        const int g = ((r * nc + t - k) % G + G) % G;
        for (int e = (g % nc) * c; e < std::min((g % nc) * c + c, m); ++e) entries.push_back(pi[g / nc][e]);
      }
    }
    std::vector<int> kept;
    for (int j : entries)
      if (!st.causal || j <= i) kept.push_back(j);
    const bool other = std::any_of(kept.begin(), kept.end(), [&](int j) { return j != i; });
    if (st.self_mask && other) kept.erase(std::remove(kept.begin(), kept.end(), i), kept.end());
    if (kept.empty()) continue;
    std::vector<double> logit;
    for (int j : kept) {
      double d = 0;
      for (int f = 0; f < dk; ++f) d += s.q[i][f] * khat[j][f];
      logit.push_back(tau * d);
    }
    const double mx = *std::max_element(logit.begin(), logit.end());
    double z = 0;
    for (double l : logit) z += std::exp(l - mx);
    for (size_t e = 0; e < kept.size(); ++e)
      for (int f = 0; f < dk; ++f) out[i * dk + f] += std::exp(logit[e] - mx) / z * s.v[kept[e]][f];
  }
  return out;
}

// The worst |output - reference| over the batch; `margin` as in plain_buckets.
double max_err_vs_reference(AttnHarness<double>& a, const Settings& st, double* margin = nullptr) {
  double worst = 0;
  for (int b = 0; b + 1 < static_cast<int>(a.offsets.size()); ++b)
    for (int h = 0; h < a.H; ++h) {
      const auto o = reference(a, st, b, h, margin);
      for (int i = 0; i < a.offsets[b + 1] - a.offsets[b]; ++i)
        for (int c = 0; c < a.dk; ++c)
          worst = std::max(worst, std::fabs(o[i * a.dk + c] - a.out_at(a.offsets[b] + i, h, c)));
    }
  return worst;
}

std::string label(const Settings& st) { return st.hp().dump(); }

}  // namespace

TEST_CASE("reformer gradients match finite differences", "[reformer][grad]") {
  // Lengths that are no multiple of any chunk, a length-1 example (alone with itself), masked keys; the
  // buckets must sit at least 1e-4 from a tie so that no finite-difference step (1e-6) flips one.
  for (const auto& st : settings()) {
    INFO(label(st));
    AttnHarness<double> a("reformer", 2, 4, {70, 5, 1, 33}, 70, st.hp());
    mask_every(a, 2, 7);
    a.step = AttnStep{true, 91, 0, 3};
    a.qkv = randn(a.qkv.size(), 10);
    const auto R = randn(a.out.size(), 11);
    a.dout = R;
    a.forward();
    a.backward();
    double margin = INFINITY;
    CHECK(max_err_vs_reference(a, st, &margin) < 1e-12);
    REQUIRE(margin > 1e-4);
    auto loss = [&] {
      a.forward();
      return dot(a.out, R);
    };
    CHECK(fd_rel_error(a.qkv, a.dqkv, loss, 300, 12) < kTol);
    // K is ignored: its gradient is zero.
    for (int64_t r = 0; r < a.rows(); ++r)
      for (int c = a.Q; c < 2 * a.Q; ++c) CHECK(a.dqkv[r * 3 * a.Q + c] == 0.0);
  }
}

TEST_CASE("reformer equals a dense reference built from the same hash", "[reformer]") {
  for (auto st : settings()) {
    for (int variant = 0; variant < 2; ++variant) {
      if (variant == 1) {  // more rounds and more chunks before than there are chunks
        st.hashes = 2;
        st.before = 50;
      }
      INFO(label(st));
      AttnHarness<double> a("reformer", 3, 4, {100, 17, 64, 1, 3}, 100, st.hp());
      mask_every(a, 3, 5);
      a.step = AttnStep{false, 77, 0, 5};
      a.qkv = randn(a.qkv.size(), 12, 1.5);
      a.forward();
      CHECK(max_err_vs_reference(a, st) < 1e-12);
    }
  }
  // Chunks longer than the 128 queries scored at once, and their gradients.
  for (bool causal : {false, true}) {
    Settings st;
    st.causal = causal;
    st.hashes = 2;
    st.buckets = 4;
    st.chunk = 150;
    INFO(label(st));
    AttnHarness<double> a("reformer", 1, 4, {330, 20}, 330, st.hp());
    mask_every(a, 1, 9);
    a.qkv = randn(a.qkv.size(), 19);
    const auto R = randn(a.out.size(), 20);
    a.dout = R;
    a.forward();
    a.backward();
    double margin = INFINITY;
    CHECK(max_err_vs_reference(a, st, &margin) < 1e-12);
    REQUIRE(margin > 1e-4);
    auto loss = [&] {
      a.forward();
      return dot(a.out, R);
    };
    CHECK(fd_rel_error(a.qkv, a.dqkv, loss, 100, 21) < kTol);
  }
}

TEST_CASE("reformer with one chunk holding every key is softmax over the unit-normalised keys", "[reformer]") {
  // No hash decides anything here: with hashes = 2 each query sees its round's chunk and the other round's,
  // every key twice, which the joint softmax turns into the same weights.
  for (bool causal : {false, true})
    for (bool self_mask : {false, true})
      for (int hashes : {1, 2}) {
        Settings st;
        st.causal = causal;
        st.self_mask = self_mask;
        st.hashes = hashes;
        st.chunk = 1000;
        INFO(label(st));
        AttnHarness<double> a("reformer", 2, 4, {40, 9}, 40, st.hp());
        mask_every(a, 4, 6);
        a.qkv = randn(a.qkv.size(), 13);
        a.forward();
        double worst = 0;
        for (int b = 0; b < 2; ++b)
          for (int h = 0; h < 2; ++h) {
            const Slice s = slice(a, b, h);
            for (int i = 0; i < s.n; ++i) {
              std::vector<double> w(s.n, 0.0);
              double z = 0;
              bool other = false;
              for (int j = 0; j < s.n; ++j) other = other || (s.real[j] && j != i && (!causal || j < i));
              for (int j = 0; j < s.n; ++j) {
                if (!s.real[j] || (causal && j > i) || (self_mask && other && j == i)) continue;
                double d = 0, norm = 0;
                for (int f = 0; f < 4; ++f) {
                  d += s.q[i][f] * s.q[j][f];
                  norm += s.q[j][f] * s.q[j][f];
                }
                w[j] = std::exp(d / std::sqrt(norm) / 2.0);
                z += w[j];
              }
              for (int f = 0; f < 4; ++f) {
                double o = 0;
                for (int j = 0; j < s.n; ++j) o += z > 0 ? w[j] / z * s.v[j][f] : 0.0;
                worst = std::max(worst, std::fabs(o - a.out_at(a.offsets[b] + i, h, f)));
              }
            }
          }
        CHECK(worst < 1e-12);
      }
}

TEST_CASE("reformer draws its rotations from the step: the same step the same output, another step another",
          "[reformer]") {
  AttnHarness<double> a("reformer", 2, 4, {60}, 60);
  a.qkv = randn(a.qkv.size(), 14);
  a.step = AttnStep{true, 5, 0, 10};
  a.forward();
  const auto first = a.out;
  a.forward();
  CHECK(max_abs_diff(a.out, first) == 0.0);
  a.step.step = 11;
  a.forward();
  CHECK(max_abs_diff(a.out, first) > 1e-3);
  a.step = AttnStep{true, 6, 0, 10};
  a.forward();
  CHECK(max_abs_diff(a.out, first) > 1e-3);
}

TEST_CASE("reformer: a padded batch equals per-example runs", "[reformer][padding]") {
  // Example 0 is 30 real tokens padded to 40 (the last 10 keys masked), example 1 is 25 real tokens.
  for (const auto& st : settings()) {
    INFO(label(st));
    AttnHarness<double> full("reformer", 2, 4, {40, 25}, 40, st.hp());
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
      AttnHarness<double> one("reformer", 2, 4, {lengths[e]}, 40, st.hp());
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
    }
    // The padded rows get no gradient at all (their queries' outputs are not pooled, their keys are hidden).
    for (int r = 30; r < 40; ++r)
      for (int c = 0; c < 3 * full.Q; ++c) CHECK(full.dqkv[r * 3 * full.Q + c] == 0.0);
  }
}

TEST_CASE("reformer: masked keys have no influence, not even through the hash", "[reformer][padding]") {
  for (const auto& st : settings()) {
    INFO(label(st));
    AttnHarness<double> a("reformer", 2, 4, {30, 20}, 32, st.hp());
    const std::vector<int> hidden = {3, 17, 29, 35, 49};
    a.mask.assign(50, 1);
    for (int r : hidden) a.mask[r] = 0;
    a.qkv = randn(a.qkv.size(), 22);
    a.forward();
    const auto before = a.out;
    // Their keys and values: nothing moves.
    for (int r : hidden)
      for (int c = a.Q; c < 3 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] += 5.0;
    a.forward();
    CHECK(max_abs_diff(a.out, before) < 1e-12);
    // Their queries (which hash them): only their own outputs move.
    for (int r : hidden)
      for (int c = 0; c < a.Q; ++c) a.qkv[r * 3 * a.Q + c] = -2.0 * a.qkv[r * 3 * a.Q + c] + 1.0;
    a.forward();
    double moved_real = 0, moved_hidden = 0;
    for (int r = 0; r < 50; ++r)
      for (int c = 0; c < a.Q; ++c) {
        const double d = std::fabs(a.out[r * a.Q + c] - before[r * a.Q + c]);
        double& m = a.mask[r] != 0 ? moved_real : moved_hidden;
        m = std::max(m, d);
      }
    CHECK(moved_real < 1e-12);
    CHECK(moved_hidden > 1e-3);
  }
}

TEST_CASE("reformer: an example with every key masked gives zeros, not NaN", "[reformer][padding]") {
  for (const auto& st : settings()) {
    INFO(label(st));
    AttnHarness<double> a("reformer", 2, 3, {6, 4}, 6, st.hp());
    a.mask = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    a.qkv = randn(a.qkv.size(), 15);
    a.dout = randn(a.out.size(), 16);
    a.forward();
    a.backward();
    for (double x : a.out) CHECK(std::isfinite(x));
    for (double x : a.dqkv) CHECK(std::isfinite(x));
    for (int64_t r = 6; r < 10; ++r) {
      for (int c = 0; c < a.Q; ++c) CHECK(a.out[r * a.Q + c] == 0.0);
      for (int c = 0; c < 3 * a.Q; ++c) CHECK(a.dqkv[r * 3 * a.Q + c] == 0.0);
    }
  }
}

TEST_CASE("reformer: with self_mask a query alone with itself outputs its value", "[reformer]") {
  // A length-1 example, and in causal mode the first token (whose every chunk holds no earlier key).
  for (bool causal : {false, true}) {
    Settings st;
    st.causal = causal;
    AttnHarness<double> a("reformer", 2, 4, {1, 12}, 12, st.hp());
    a.qkv = randn(a.qkv.size(), 17);
    a.dout = randn(a.out.size(), 18);
    a.forward();
    a.backward();
    for (int64_t r : {int64_t{0}, int64_t{1}}) {
      if (r == 1 && !causal) continue;
      for (int h = 0; h < 2; ++h)
        for (int c = 0; c < 4; ++c) {
          CHECK(a.out_at(r, h, c) == a.at(2, r, h, c));
          if (r == 0) CHECK(a.dqkv[r * 3 * a.Q + 2 * a.Q + h * 4 + c] == a.dout[r * a.Q + h * 4 + c]);
        }
    }
  }
}

TEST_CASE("reformer: a causal output does not depend on later values", "[reformer][causal]") {
  // Later tokens' values (and keys, which are ignored) cannot reach earlier outputs. Their queries can:
  // they take part in the hash and the sort, so they move chunk boundaries, as in the paper.
  for (auto st : settings()) {
    if (!st.causal) continue;
    INFO(label(st));
    AttnHarness<double> a("reformer", 2, 4, {150}, 150, st.hp());
    a.qkv = randn(a.qkv.size(), 14);
    a.forward();
    const auto before = a.out;
    const int cut = 77;
    for (int64_t r = cut; r < 150; ++r)
      for (int c = a.Q; c < 3 * a.Q; ++c) a.qkv[r * 3 * a.Q + c] += 3.0;
    a.forward();
    double moved_before = 0, moved_after = 0;
    for (int64_t r = 0; r < 150; ++r)
      for (int c = 0; c < a.Q; ++c) {
        const double d = std::fabs(a.out[r * a.Q + c] - before[r * a.Q + c]);
        double& m = r < cut ? moved_before : moved_after;
        m = std::max(m, d);
      }
    CHECK(moved_before == 0.0);
    CHECK(moved_after > 1e-3);
  }
}

TEST_CASE("reformer: float agrees with double", "[reformer]") {
  for (const auto& st : settings()) {
    INFO(label(st));
    AttnHarness<double> d("reformer", 2, 8, {200, 77}, 200, st.hp());
    AttnHarness<float> f("reformer", 2, 8, {200, 77}, 200, st.hp());
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

TEST_CASE("reformer keeps memory linear in the length", "[reformer]") {
  for (const auto& st : settings()) {
    INFO(label(st));
    auto saved = [&](int L) {
      AttnConfig c;
      c.heads = 2;
      c.dk = c.dv = 8;
      c.max_len = L;
      c.hp = resolve_attention_params(find_attention("reformer"), st.hp());
      return static_cast<double>(make_attention<double>("reformer", c)->saved_bytes(1, L));
    };
    CHECK(saved(4000) / saved(1000) == Approx(4.0).epsilon(0.01));
  }
}

TEST_CASE("reformer hyperparameters are checked", "[reformer]") {
  auto make = [](nlohmann::json hp) { AttnHarness<double> a("reformer", 1, 4, {8}, 8, hp); };
  CHECK_THROWS_WITH(make({{"buckets", 3}}), Catch::Contains("buckets must be even"));
  CHECK_THROWS_WITH(make({{"buckets", 0}}), Catch::Contains("buckets must be even and in 2..65536"));
  CHECK_THROWS_WITH(make({{"hashes", 0}}), Catch::Contains("hashes (rounds of hashing) must be in 1..255"));
  CHECK_THROWS_WITH(make({{"hashes", 256}}), Catch::Contains("must be in 1..255, got 256"));
  CHECK_THROWS_WITH(make({{"hashes", 1.5}}), Catch::Contains("hashes must be an integer, got 1.5"));
  CHECK_THROWS_WITH(make({{"chunk", -1}}), Catch::Contains("chunk must be >= 0"));
  CHECK_THROWS_WITH(make({{"chunks_before", -2}}), Catch::Contains("chunks_before must be >= 0"));
  CHECK_THROWS_WITH(make({{"self_mask", 1}}), Catch::Contains("expects a value like true"));
  CHECK_THROWS_WITH(make({{"bucket", 4}}), Catch::Contains("has no hyperparameter 'bucket'"));
  CHECK_NOTHROW(make({{"buckets", 2}, {"hashes", 4}, {"chunk", 100}, {"chunks_before", 0}, {"causal", true}}));
}
