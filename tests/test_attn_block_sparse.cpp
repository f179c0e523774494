// The block-sparse variants (local, sparse, longformer, bigbird): their patterns against the papers'
// definitions, the engine against dense softmax with the pattern's mask, and gradients by finite
// differences (with padding, causality and attention dropout). The generic padding, float and causality
// tests of tests/test_attention.cpp cover them too.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>

#include "attn/block_sparse.h"
#include "attn_harness.h"

using namespace lra;
using namespace lra::test;

namespace {

struct Case {
  std::string name;
  nlohmann::json hp;
  std::shared_ptr<SparsePattern> pattern;
};

// Small blocks and windows so examples of a few dozen rows cross several blocks.
std::vector<Case> cases(bool causal) {
  std::vector<Case> v = {
      {"local", {{"block", 16}}, std::make_shared<LocalPattern>(16)},
      {"sparse", {{"block", 16}, {"summary", 3}}, std::make_shared<FixedPattern>(16, 3, causal)},
      {"longformer", {{"window", 20}, {"global", {0}}}, std::make_shared<LongformerPattern>(20, std::vector<int>{0})},
      {"longformer", {{"window", 9}, {"global", {0, 40, 7}}},
       std::make_shared<LongformerPattern>(9, std::vector<int>{0, 7, 40})},
      {"longformer", {{"window", 16}, {"global", nlohmann::json::array()}},
       std::make_shared<LongformerPattern>(16, std::vector<int>{})},
      {"bigbird", {{"block", 8}, {"random", 2}}, std::make_shared<BigBirdPattern>(8, 2, 0, 0)},
      {"bigbird", {{"block", 8}, {"random", 2}, {"random_limit", 32}}, std::make_shared<BigBirdPattern>(8, 2, 32, 0)},
  };
  for (auto& c : v) c.hp["causal"] = causal;
  return v;
}

std::vector<Case> all_cases() {
  auto v = cases(false);
  for (auto& c : cases(true)) v.push_back(c);
  return v;
}

// Dense softmax over the keys the pattern allows (and the key mask, and causality), per (example, head).
double max_err_vs_dense(AttnHarness<double>& a, const Case& c) {
  const bool causal = c.hp["causal"];
  const double tau = 1.0 / std::sqrt(a.dk);
  double worst = 0;
  for (size_t b = 0; b + 1 < a.offsets.size(); ++b) {
    const int64_t r0 = a.offsets[b];
    const int n = a.offsets[b + 1] - a.offsets[b];
    for (int h = 0; h < a.H; ++h)
      for (int q = 0; q < n; ++q) {
        std::vector<double> s(n, -INFINITY);
        double m = -INFINITY;
        for (int k = 0; k < n; ++k) {
          const bool real = a.mask.empty() || a.mask[r0 + k];
          if (!real || (causal && k > q) || !c.pattern->allowed(n, h, q, k, a.step.seed)) continue;
          double d = 0;
          for (int i = 0; i < a.dk; ++i) d += a.at(0, r0 + q, h, i) * a.at(1, r0 + k, h, i);
          s[k] = d * tau;
          m = std::max(m, s[k]);
        }
        double z = 0;
        for (int k = 0; k < n; ++k) z += m == -INFINITY ? 0.0 : std::exp(s[k] - m);
        for (int i = 0; i < a.dk; ++i) {
          double o = 0;
          for (int k = 0; k < n; ++k)
            if (m != -INFINITY) o += std::exp(s[k] - m) / z * a.at(2, r0 + k, h, i);
          worst = std::max(worst, std::fabs(o - a.out_at(r0 + q, h, i)));
        }
      }
  }
  return worst;
}

}  // namespace

TEST_CASE("block-sparse variants equal dense softmax with their pattern's mask", "[attn][sparse]") {
  for (const auto& c : all_cases()) {
    INFO(c.name << " " << c.hp.dump());
    AttnHarness<double> a(c.name, 3, 4, {70, 5, 1, 45}, 70, c.hp);
    a.mask.assign(static_cast<size_t>(a.rows()), 1);
    for (int64_t r = 3; r < a.rows(); r += 6) a.mask[static_cast<size_t>(r)] = 0;
    a.qkv = randn(a.qkv.size(), 31, 1.5);
    a.step.seed = 77;  // bigbird's random blocks come from the run's seed
    a.forward();
    CHECK(max_err_vs_dense(a, c) < 1e-12);
  }
}

TEST_CASE("block-sparse gradients match finite differences", "[attn][sparse][grad]") {
  for (const auto& c : all_cases()) {
    INFO(c.name << " " << c.hp.dump());
    AttnHarness<double> a(c.name, 2, 4, {70, 5, 1, 45}, 70, c.hp);
    a.mask.assign(static_cast<size_t>(a.rows()), 1);
    for (int64_t r = 2; r < a.rows(); r += 7) a.mask[static_cast<size_t>(r)] = 0;
    CHECK(attention_fd_error(a, 40, 80) < 1e-6);
  }
}

TEST_CASE("block-sparse gradients with attention dropout", "[attn][sparse][grad]") {
  for (const auto& c : cases(false)) {
    INFO(c.name << " " << c.hp.dump());
    AttnHarness<double> a(c.name, 2, 4, {40, 9}, 40, c.hp, 0.25f);
    a.step = AttnStep{true, 99, 3, 0};
    CHECK(attention_fd_error(a, 41, 80) < 1e-6);
  }
}

TEST_CASE("local attention sees exactly its own block", "[attn][sparse]") {
  LocalPattern p(5);
  for (int q = 0; q < 23; ++q)
    for (int k = 0; k < 23; ++k) CHECK(p.allowed(23, 0, q, k, 1) == (q / 5 == k / 5));
}

TEST_CASE("the fixed pattern is the own block plus every block's summary columns", "[attn][sparse]") {
  for (bool causal : {false, true}) {
    FixedPattern p(6, 2, causal);
    for (int q = 0; q < 29; ++q)
      for (int k = 0; k < 29; ++k) {
        bool want = q / 6 == k / 6 || k % 6 >= 4;
        if (causal && k / 6 > q / 6) want = false;  // later blocks are never gathered
        INFO(q << " " << k);
        CHECK(p.allowed(29, 0, q, k, 1) == want);
      }
  }
}

TEST_CASE("longformer sees its window and the global positions", "[attn][sparse]") {
  LongformerPattern p(6, {0, 11});
  for (int q = 0; q < 40; ++q)
    for (int k = 0; k < 40; ++k) {
      const bool want = std::abs(q - k) <= 3 || q == 0 || q == 11 || k == 0 || k == 11;
      INFO(q << " " << k);
      CHECK(p.allowed(40, 0, q, k, 1) == want);
    }
  // A global position past the end of a short example is ignored.
  CHECK(p.num_query_blocks(5) == 2);
}

TEST_CASE("bigbird: global, sliding and random blocks", "[attn][sparse]") {
  const int block = 4, n = 64, nb = 16;
  BigBirdPattern p(block, 3, 0, 2);
  std::set<std::vector<int>> distinct;
  for (int h = 0; h < 3; ++h)
    for (int qb = 0; qb < nb; ++qb) {
      const auto blocks = p.key_blocks(n, h, qb, 5);
      if (qb == 0 || qb == nb - 1) {
        CHECK(blocks.size() == static_cast<size_t>(nb));  // global blocks see everything
        continue;
      }
      const std::set<int> s(blocks.begin(), blocks.end());
      CHECK(s.size() == blocks.size());
      for (int j : {0, qb - 1, qb, qb + 1, nb - 1}) CHECK(s.count(j) == 1);
      const size_t fixed = std::set<int>{0, qb - 1, qb, qb + 1, nb - 1}.size();
      CHECK(blocks.size() == fixed + 3);
      distinct.insert(blocks);
      CHECK(p.key_blocks(n, h, qb, 5) == blocks);  // fixed for the run
    }
  CHECK(distinct.size() > 20);  // random blocks differ across heads and blocks
  // Every block sees the global blocks; limits keep the random blocks early.
  BigBirdPattern lim(block, 3, 24, 0);
  for (int qb = 1; qb + 1 < nb; ++qb)
    for (int j : lim.key_blocks(n, 0, qb, 5))
      CHECK((j * block < 24 || j == 0 || j == nb - 1 || std::abs(j - qb) <= 1));
  // Fewer candidates than `random`: all of them, no repeats.
  CHECK(p.key_blocks(20, 0, 2, 5).size() == 5);
}

TEST_CASE("pattern spans stay within the bounds the GPU sizes its buffers by", "[attn][sparse]") {
  const int max_len = 140;
  for (const auto& c : all_cases()) {
    const PatternSpec& spec = c.pattern->spec();
    const int cap = pattern_max_spans(spec, max_len);
    for (int n = 1; n <= max_len; ++n) {
      CHECK(pattern_max_spans(spec, n) <= cap);
      CHECK(pattern_work_ints(spec, n) <= pattern_work_ints(spec, max_len));
      int covered = 0;
      for (int qb = 0; qb < c.pattern->num_query_blocks(n); ++qb) {
        const RowRange r = c.pattern->query_block(n, qb);
        INFO(c.name << " " << c.hp.dump() << " n " << n << " block " << qb);
        CHECK(r.begin == covered);  // query blocks partition the rows in order
        CHECK(r.end > r.begin);
        CHECK(r.end - r.begin <= c.pattern->max_block_rows());
        covered = r.end;
        for (int h = 0; h < 3; ++h) {
          std::vector<KeySpan> spans;
          c.pattern->key_spans(n, h, qb, 5, spans);
          CHECK(static_cast<int>(spans.size()) <= pattern_max_spans(spec, n));
          for (size_t i = 0; i < spans.size(); ++i) {
            CHECK(spans[i].begin >= 0);
            CHECK(spans[i].begin < spans[i].end);
            CHECK(spans[i].end <= n);
            if (i > 0) CHECK(spans[i - 1].end <= spans[i].begin);  // ascending and disjoint
          }
        }
      }
      CHECK(covered == n);
    }
  }
}

TEST_CASE("a span's visible keys: band and causality", "[attn][sparse]") {
  int lo = 0, hi = 0;
  span_visible(KeySpan{10, 30, -1}, 5, false, &lo, &hi);
  CHECK((lo == 10 && hi == 30));
  span_visible(KeySpan{10, 30, -1}, 15, true, &lo, &hi);
  CHECK((lo == 10 && hi == 16));
  span_visible(KeySpan{10, 30, -1}, 5, true, &lo, &hi);
  CHECK(lo == hi);  // every key after the query
  span_visible(KeySpan{10, 30, 3}, 20, false, &lo, &hi);
  CHECK((lo == 17 && hi == 24));
  span_visible(KeySpan{10, 30, 3}, 2, false, &lo, &hi);
  CHECK(lo == hi);  // the band misses the span
  span_visible(KeySpan{10, 30, 3}, 40, false, &lo, &hi);
  CHECK(lo == hi);
  span_visible(KeySpan{10, 30, 3}, 28, true, &lo, &hi);
  CHECK((lo == 25 && hi == 29));
}

TEST_CASE("block-sparse hyperparameters are checked", "[attn][sparse]") {
  CHECK_THROWS_WITH(AttnHarness<double>("local", 1, 2, {4}, 4, {{"block", 0}}), Catch::Contains("block >= 1"));
  CHECK_THROWS_WITH(AttnHarness<double>("sparse", 1, 2, {4}, 4, {{"block", 5}, {"summary", 6}}),
                    Catch::Contains("1 <= summary <= block"));
  CHECK_THROWS_WITH(AttnHarness<double>("longformer", 1, 2, {4}, 4, {{"global", "cls"}}),
                    Catch::Contains("expects a value like [0]"));
  CHECK_THROWS_WITH(AttnHarness<double>("longformer", 1, 2, {4}, 4, {{"global", {-1}}}),
                    Catch::Contains("global positions must be >= 0"));
  CHECK_THROWS_WITH(AttnHarness<double>("bigbird", 1, 2, {4}, 4, {{"random", -1}}), Catch::Contains("random >= 0"));
  nlohmann::json many = nlohmann::json::array();
  for (int g = 0; g <= PatternSpec::kMaxGlobal; ++g) many.push_back(g);
  CHECK_THROWS_WITH(AttnHarness<double>("longformer", 1, 2, {4}, 4, {{"global", many}}),
                    Catch::Contains("at most 64 global positions"));
}
