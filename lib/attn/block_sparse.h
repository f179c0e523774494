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

namespace lra {

struct RowRange {
  int begin = 0, end = 0;
};

// Keys [begin, end) of the example. radius >= 0 keeps only keys with |q - k| <= radius (a band).
struct KeySpan {
  int begin = 0, end = 0;
  int radius = -1;
};

class SparsePattern {
 public:
  virtual ~SparsePattern() = default;
  virtual int num_query_blocks(int n) const = 0;
  virtual RowRange query_block(int n, int qb) const = 0;
  // The key spans of query block qb for head h (ascending and disjoint), appended to `out` (cleared
  // first). `seed` is the run's seed: patterns with random parts draw them from it, once per run.
  virtual void key_spans(int n, int h, int qb, uint64_t seed, std::vector<KeySpan>& out) const = 0;
  // Most rows in a query block.
  virtual int max_block_rows() const = 0;
  // Whether query q may see key k (before padding and causality): the pattern as a dense predicate,
  // for tests and explanations; the engine never calls it.
  bool allowed(int n, int h, int q, int k, uint64_t seed) const;
};

// Non-overlapping blocks of `block` rows; each attends within itself.
class LocalPattern final : public SparsePattern {
 public:
  explicit LocalPattern(int block);
  int num_query_blocks(int n) const override;
  RowRange query_block(int n, int qb) const override;
  void key_spans(int n, int h, int qb, uint64_t seed, std::vector<KeySpan>& out) const override;
  int max_block_rows() const override { return block_; }

 private:
  int block_;
};

// The Sparse Transformer's fixed pattern (Child et al. 2019): blocks of `block` rows; a query sees its
// own block and the last `summary` positions ("summary" columns) of every other block.
class FixedPattern final : public SparsePattern {
 public:
  FixedPattern(int block, int summary, bool causal);
  int num_query_blocks(int n) const override;
  RowRange query_block(int n, int qb) const override;
  void key_spans(int n, int h, int qb, uint64_t seed, std::vector<KeySpan>& out) const override;
  int max_block_rows() const override { return block_; }

 private:
  int block_, summary_;
  bool causal_;
};

// Longformer (Beltagy et al. 2020): a sliding window, |q - k| <= window / 2, plus global positions that
// attend to, and are attended by, every position. `global` lists positions (0 = CLS).
class LongformerPattern final : public SparsePattern {
 public:
  LongformerPattern(int window, std::vector<int> global);
  int num_query_blocks(int n) const override;
  RowRange query_block(int n, int qb) const override;
  void key_spans(int n, int h, int qb, uint64_t seed, std::vector<KeySpan>& out) const override;
  int max_block_rows() const override { return kRows; }

 private:
  static constexpr int kRows = 64;
  // Query blocks: each global position alone, then the other rows in runs of at most kRows.
  void blocks(int n, std::vector<RowRange>& out) const;
  bool is_global(int pos) const;
  int radius_;
  std::vector<int> global_;  // ascending, distinct
};

// BigBird (ITC, Zaheer et al. 2020): blocks of `block` rows. The first and last blocks are global
// (they see every key and every block sees them); every other block sees its neighbours (itself +- 1)
// and `random` other blocks, drawn per (layer, head, block) from the run's seed.
class BigBirdPattern final : public SparsePattern {
 public:
  // random_limit > 0 draws random blocks only among those starting before that position (LRA's code: 1024).
  BigBirdPattern(int block, int random, int random_limit, int layer);
  int num_query_blocks(int n) const override;
  RowRange query_block(int n, int qb) const override;
  void key_spans(int n, int h, int qb, uint64_t seed, std::vector<KeySpan>& out) const override;
  int max_block_rows() const override { return block_; }
  // The key blocks of query block qb, ascending.
  std::vector<int> key_blocks(int n, int h, int qb, uint64_t seed) const;

 private:
  int block_, random_, random_limit_, layer_;
};

template <class T>
std::unique_ptr<Attention<T>> make_block_sparse_attention(const AttnConfig& c, std::shared_ptr<const SparsePattern> p);

// Completes `info` (name, summary, params) with factories that run `pattern(config)` on the engine.
using PatternFactory = std::function<std::shared_ptr<const SparsePattern>(const AttnConfig&)>;
AttnInfo block_sparse_info(AttnInfo info, PatternFactory pattern);

}  // namespace lra
