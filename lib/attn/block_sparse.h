// Block-sparse softmax attention: the engine behind local, sparse, longformer and bigbird.
//
// A SparsePattern splits an example of n rows into query blocks and names, for each block, the key
// spans it attends to. The engine gathers those keys, runs exact softmax over them (tiled as in
// softmax.cpp: only a log-sum-exp per query is kept, the scores are recomputed in the backward), and
// scatters the key and value gradients back. No L x L matrix ever exists; the work of a block is
// (block rows) x (keys it sees). Patterns are built from the example's own length, so a padded batch
// equals per-example runs.
//
// Per query row q with visible keys J(q) (the spans of its block, minus hidden keys, minus keys
// outside a span's band, minus k > q when causal), tau = dk^-1/2:
//   forward:  S_qk = tau q.k,  LSE_q = log sum_{k in J(q)} exp S_qk,  P = exp(S - LSE),
//             P' = P z / (1-p) (attention dropout, z from the counter RNG),  O_q = sum_k P'_qk v_k
//   backward: dV_k += sum_q P'_qk dO_q,  dP = (dO V^T) z / (1-p),  D_q = dO_q . O_q,  dS = P (dP - D),
//             dQ = tau dS K,  dK += tau dS^T Q
// A query with no visible key outputs 0 (LSE = +inf, so P = 0 in the backward).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "attn/attention.h"
#include "attn/sparse_pattern.h"

namespace lra {

// A pattern as the engines use it: its PatternSpec and the LRA_HD functions of sparse_pattern.h behind
// the methods the CPU engine and the tests call. The subclasses check their arguments and fill the spec.
class SparsePattern {
 public:
  explicit SparsePattern(const PatternSpec& spec) : spec_(spec) {}
  const PatternSpec& spec() const { return spec_; }
  int num_query_blocks(int n) const { return pattern_num_query_blocks(spec_, n); }
  RowRange query_block(int n, int qb) const { return pattern_query_block(spec_, n, qb); }
  // The key spans of query block qb for head h (ascending and disjoint), into `out` (replaced). `seed` is
  // the run's seed: patterns with random parts draw them from it, once per run.
  void key_spans(int n, int h, int qb, uint64_t seed, std::vector<KeySpan>& out) const;
  // Most rows in a query block.
  int max_block_rows() const { return pattern_max_block_rows(spec_); }
  // Whether query q may see key k (before padding and causality): the pattern as a dense predicate,
  // for tests and explanations; the engine never calls it.
  bool allowed(int n, int h, int q, int k, uint64_t seed) const;

 private:
  PatternSpec spec_;
};

// Non-overlapping blocks of `block` rows; each attends within itself.
class LocalPattern final : public SparsePattern {
 public:
  explicit LocalPattern(int block);
};

// The Sparse Transformer's fixed pattern (Child et al. 2019): blocks of `block` rows; a query sees its
// own block and the last `summary` positions ("summary" columns) of every other block.
class FixedPattern final : public SparsePattern {
 public:
  FixedPattern(int block, int summary, bool causal);
};

// Longformer (Beltagy et al. 2020): a sliding window, |q - k| <= window / 2, plus global positions that
// attend to, and are attended by, every position. `global` lists positions (0 = CLS), at most
// PatternSpec::kMaxGlobal. Query blocks: each global position alone, then the other rows in runs of at
// most PatternSpec::kLongformerRows.
class LongformerPattern final : public SparsePattern {
 public:
  LongformerPattern(int window, std::vector<int> global);
};

// BigBird (ITC, Zaheer et al. 2020): blocks of `block` rows. The first and last blocks are global
// (they see every key and every block sees them); every other block sees its neighbours (itself +- 1)
// and `random` other blocks, drawn per (layer, head, block) from the run's seed.
class BigBirdPattern final : public SparsePattern {
 public:
  // random_limit > 0 draws random blocks only among those starting before that position (LRA's code: 1024).
  BigBirdPattern(int block, int random, int random_limit, int layer);
  // The key blocks of query block qb, ascending.
  std::vector<int> key_blocks(int n, int h, int qb, uint64_t seed) const;
};

// What the engines read beside the pattern (which its variant's factory parses), on every device.
struct BlockSparseOptions {
  bool causal = false;
  static BlockSparseOptions parse(const AttnConfig& c);
};

template <class T>
std::unique_ptr<Attention<T>> make_block_sparse_attention(const AttnConfig& c, std::shared_ptr<const SparsePattern> p);

// Completes `info` (name, summary, params) with factories that run `pattern(config)` on the engine.
using PatternFactory = std::function<std::shared_ptr<const SparsePattern>(const AttnConfig&)>;
AttnInfo block_sparse_info(AttnInfo info, PatternFactory pattern);

}  // namespace lra
