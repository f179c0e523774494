// The ListOps generator: LRA's tree distribution, rejection on length, deduplication, and the
// prefix-stable assignment of unique trees to val, test and train.
#include <omp.h>

#include <algorithm>
#include <unordered_map>

#include "core/check.h"
#include "tasks/listops/listops.h"

namespace lra::listops {

namespace {

// The generator's Philox streams (chunk index in the low bits), apart from rng.h's named streams.
constexpr uint64_t kStreamBase = 6ull << 56;
// Candidates per chunk: each chunk is a pure function of (seed, chunk index), so chunks can be
// drawn in parallel and merged in index order with the same result for any thread count.
constexpr int kChunkCandidates = 1024;
// A generous bound on chunks in a row without a new tree before a configuration counts as hopeless.
constexpr uint64_t kMaxBarrenChunks = 4096;

// Uniform in [0, n) from one 32-bit draw (Lemire's multiply-shift with rejection, so no bias); the
// generator draws hundreds of millions of these and Rng::below spends 64 bits on each.
uint32_t below32(Rng& rng, uint32_t n) {
  uint64_t m = static_cast<uint64_t>(rng.next_u32()) * n;
  if (static_cast<uint32_t>(m) < n) {
    const uint32_t threshold = (0u - n) % n;
    while (static_cast<uint32_t>(m) < threshold) m = static_cast<uint64_t>(rng.next_u32()) * n;
  }
  return static_cast<uint32_t>(m >> 32);
}

bool sample_node(Rng& rng, const GeneratorConfig& cfg, int depth, int& committed,
                 std::vector<uint16_t>& out) {
  // u ~ U[0,1) on the 2^-32 grid: one 32-bit draw instead of Rng::uniform's 64.
  const double u = depth < cfg.max_depth ? static_cast<double>(rng.next_u32()) * 0x1p-32 : 1.0;
  if (u > cfg.value_p) {
    out.push_back(static_cast<uint16_t>(kDigit0 + below32(rng, 10)));
    return true;
  }
  const int k = 2 + static_cast<int>(below32(rng, static_cast<uint32_t>(cfg.max_args - 1)));
  // `committed` is the least length the finished tree can have: this node already counted as one
  // token becomes an operator, k arguments of at least one token and a `]`.
  committed += k + 1;
  if (committed >= cfg.max_length) return false;
  const size_t op_at = out.size();
  out.push_back(kPad);
  for (int i = 0; i < k; ++i)
    if (!sample_node(rng, cfg, depth + 1, committed, out)) return false;
  out[op_at] = static_cast<uint16_t>(kMin + below32(rng, 4));
  out.push_back(kClose);
  return true;
}

// Accepted trees of one chunk, in draw order.
struct Chunk {
  std::vector<uint16_t> tokens;
  std::vector<size_t> offsets{0};
  std::vector<int32_t> labels;
  std::vector<uint64_t> hashes;
};

uint64_t hash_tokens(const uint16_t* t, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= t[i];
    h *= 1099511628211ull;
  }
  return h;
}

// Fills `c` (its buffers are reused across waves to spare the allocator and page faults).
void sample_chunk(uint64_t seed, uint64_t index, const GeneratorConfig& cfg, Chunk& c) {
  Rng rng(seed, kStreamBase | index);
  c.tokens.clear();
  c.offsets.assign(1, 0);
  c.labels.clear();
  c.hashes.clear();
  for (int i = 0; i < kChunkCandidates; ++i) {
    // Trees are drawn straight into the chunk and cut off again when rejected.
    const size_t at = c.tokens.size();
    int committed = 1;
    const bool complete = sample_node(rng, cfg, 1, committed, c.tokens);
    const size_t n = c.tokens.size() - at;
    if (!complete || static_cast<int>(n) <= cfg.min_length) {
      c.tokens.resize(at);
      continue;
    }
    c.offsets.push_back(c.tokens.size());
    c.labels.push_back(evaluate(c.tokens.data() + at, n));
    c.hashes.push_back(hash_tokens(c.tokens.data() + at, n));
  }
}

}  // namespace

bool sample_tree(Rng& rng, const GeneratorConfig& cfg, std::vector<uint16_t>& out) {
  out.clear();
  int committed = 1;
  return sample_node(rng, cfg, 1, committed, out);
}

TaskData generate(uint64_t seed, const SplitSizes& sizes, const GeneratorConfig& cfg) {
  LRA_CHECK(sizes.train >= 0 && sizes.val >= 0 && sizes.test >= 0,
            "ListOps split sizes must not be negative (train {}, val {}, test {})", sizes.train,
            sizes.val, sizes.test);
  LRA_CHECK(cfg.max_depth >= 1 && cfg.max_args >= 2 && cfg.min_length + 1 < cfg.max_length,
            "invalid ListOps generator settings (max_depth {}, max_args {}, lengths ({}, {}))",
            cfg.max_depth, cfg.max_args, cfg.min_length, cfg.max_length);
  TaskData data;
  const int64_t total = sizes.val + sizes.test + sizes.train;
  // Accepted trees average about 1035 tokens; reserving a little more avoids copying the splits
  // (hundreds of MB) as they grow.
  for (auto [split, n] :
       {std::pair{&data.val, sizes.val}, {&data.test, sizes.test}, {&data.train, sizes.train}}) {
    split->tokens.reserve(static_cast<size_t>(n) * 1100);
    split->offsets.reserve(static_cast<size_t>(n) + 1);
    split->labels.reserve(static_cast<size_t>(n));
  }
  // Unique trees are numbered in draw order; the number alone decides the split.
  auto split_of = [&](int64_t g) -> Split& {
    if (g < sizes.val) return data.val;
    if (g < sizes.val + sizes.test) return data.test;
    return data.train;
  };
  // Hash -> (split, index) of the trees taken so far; equal hashes are compared token by token.
  std::unordered_multimap<uint64_t, std::pair<const Split*, size_t>> seen;
  seen.reserve(static_cast<size_t>(total));
  int64_t taken = 0;
  uint64_t next_chunk = 0, barren = 0;
  const int64_t threads = omp_get_max_threads();
  std::vector<Chunk> chunks;
  while (taken < total) {
    // About 80 trees per chunk are accepted: draw roughly what is still missing (more after barren
    // chunks), at least one chunk per thread, and bound the memory held by one wave.
    const int64_t wanted = std::max((total - taken) / 64 + 1, static_cast<int64_t>(barren));
    const int64_t wave = std::max(threads, std::min<int64_t>(256, wanted));
    if (chunks.size() < static_cast<size_t>(wave)) chunks.resize(static_cast<size_t>(wave));
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < wave; ++i)
      sample_chunk(seed, next_chunk + static_cast<uint64_t>(i), cfg,
                   chunks[static_cast<size_t>(i)]);
    next_chunk += static_cast<uint64_t>(wave);
    for (int64_t w = 0; w < wave; ++w) {
      const Chunk& c = chunks[static_cast<size_t>(w)];
      const int64_t before = taken;
      for (size_t j = 0; j < c.labels.size() && taken < total; ++j) {
        const uint16_t* t = c.tokens.data() + c.offsets[j];
        const size_t n = c.offsets[j + 1] - c.offsets[j];
        const auto [lo, hi] = seen.equal_range(c.hashes[j]);
        const bool duplicate = std::any_of(lo, hi, [&](const auto& entry) {
          const auto& [s, idx] = entry.second;
          return static_cast<size_t>(s->length(idx)) == n &&
                 std::equal(t, t + n,
                            s->tokens.begin() + static_cast<std::ptrdiff_t>(s->offsets[idx]));
        });
        if (duplicate) continue;
        Split& s = split_of(taken++);
        s.tokens.insert(s.tokens.end(), t, t + n);
        s.offsets.push_back(s.tokens.size());
        s.labels.push_back(c.labels[j]);
        seen.emplace(c.hashes[j], std::make_pair(&s, s.size() - 1));
      }
      barren = taken > before ? 0 : barren + 1;
    }
    LRA_CHECK(
        barren < kMaxBarrenChunks,
        "the ListOps generator drew {} trees in a row without a new one of length in ({}, {}); "
        "widen the length bounds or raise max_depth/max_args",
        barren * kChunkCandidates, cfg.min_length, cfg.max_length);
  }
  return data;
}

}  // namespace lra::listops
