// The block-sparse attention patterns (local, the Sparse Transformer's fixed pattern, Longformer,
// BigBird) as plain data and LRA_HD functions: the CPU engine (block_sparse.cpp) and the GPU kernels
// (lib/cuda/block_sparse.cu) cut an example into query blocks and list each block's key spans with this
// one code, so the main test suite checks what the GPU runs.
//
// An example of n rows is cut into query blocks (row ranges that partition 0 .. n-1); query block qb of
// head h sees key spans (ascending, disjoint), each optionally a band: keys with |q - k| <= radius.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "core/rng.h"

namespace lra {

struct RowRange {
  int begin = 0, end = 0;
};

// Keys [begin, end) of the example. radius >= 0 keeps only keys with |q - k| <= radius (a band).
struct KeySpan {
  int begin = 0, end = 0;
  int radius = -1;
};

enum class PatternKind : int { Local, Fixed, Longformer, BigBird };

struct PatternSpec {
  static constexpr int kMaxGlobal = 64;   // Longformer's global positions
  static constexpr int kLongformerRows = 64;  // rows of a Longformer query block between global positions
  PatternKind kind = PatternKind::Local;
  int block = 1;        // rows per block (local, fixed, bigbird)
  int summary = 0;      // fixed: the last `summary` rows of every block are seen by all
  bool causal = false;  // fixed: blocks after the query's are not listed
  int radius = 0;       // longformer: window / 2
  int n_global = 0;     // longformer: global positions, ascending and distinct
  int global[kMaxGlobal] = {};
  int random = 0;        // bigbird: random key blocks per query block
  int random_limit = 0;  // bigbird: random blocks start before this position (0 = anywhere)
  int layer = 0;         // bigbird: the random blocks differ per layer
};

LRA_HD int ceil_div(int a, int b) { return (a + b - 1) / b; }
LRA_HD int imin(int a, int b) { return a < b ? a : b; }
LRA_HD int imax(int a, int b) { return a > b ? a : b; }

// Longformer's query blocks: each global position alone, the other rows in runs of at most
// kLongformerRows. Calls f(qb, range) for each in order until f returns true; returns the block count.
template <class F>
LRA_HD int longformer_blocks(const PatternSpec& p, int n, F&& f) {
  constexpr int R = PatternSpec::kLongformerRows;
  int count = 0, start = 0;
  for (int gi = 0; gi < p.n_global; ++gi) {
    const int g = p.global[gi];
    if (g >= n) break;
    for (int b = start; b < g; b += R)
      if (f(count++, RowRange{b, imin(g, b + R)})) return count;
    if (f(count++, RowRange{g, g + 1})) return count;
    start = g + 1;
  }
  for (int b = start; b < n; b += R)
    if (f(count++, RowRange{b, imin(n, b + R)})) return count;
  return count;
}

LRA_HD int pattern_num_query_blocks(const PatternSpec& p, int n) {
  if (p.kind == PatternKind::Longformer) return longformer_blocks(p, n, [](int, RowRange) { return false; });
  return ceil_div(n, p.block);
}

LRA_HD RowRange pattern_query_block(const PatternSpec& p, int n, int qb) {
  if (p.kind == PatternKind::Longformer) {
    RowRange out;
    longformer_blocks(p, n, [&](int i, RowRange r) {
      out = r;
      return i == qb;
    });
    return out;
  }
  return RowRange{qb * p.block, imin(n, (qb + 1) * p.block)};
}

// The most rows of a query block.
LRA_HD int pattern_max_block_rows(const PatternSpec& p) {
  return p.kind == PatternKind::Longformer ? PatternSpec::kLongformerRows : p.block;
}

// At least the number of key spans of any query block of an example of at most n rows.
LRA_HD int pattern_max_spans(const PatternSpec& p, int n) {
  switch (p.kind) {
    case PatternKind::Local: return 1;
    case PatternKind::Fixed: return imax(1, ceil_div(n, p.block));
    case PatternKind::Longformer: return 2 * p.n_global + 1;
    default: return imax(1, imin(ceil_div(n, p.block), 5 + p.random));
  }
}

// Ints of workspace pattern_key_spans needs for an example of at most n rows.
LRA_HD int pattern_work_ints(const PatternSpec& p, int n) {
  return p.kind == PatternKind::BigBird ? 2 * ceil_div(n, p.block) : 0;
}

// BigBird: marks the key blocks of query block qb: work[j] = 1 when block j is seen, for j < nb; work
// holds 2 nb ints (the second half is the shuffle's). The first and last blocks see every block; the
// others see blocks 0, qb - 1, qb, qb + 1, nb - 1 and `random` more, drawn by a partial Fisher-Yates
// shuffle from (seed, layer, head, block, n).
LRA_HD void bigbird_mark_blocks(const PatternSpec& p, int n, int h, int qb, uint64_t seed, int* work) {
  const int nb = ceil_div(n, p.block);
  int* taken = work;
  const bool global = qb == 0 || qb == nb - 1;
  for (int j = 0; j < nb; ++j) taken[j] = global ? 1 : 0;
  if (global) return;
  taken[0] = taken[qb - 1] = taken[qb] = taken[qb + 1] = taken[nb - 1] = 1;
  int* rest = work + nb;
  int nrest = 0;
  for (int j = 0; j < nb; ++j)
    if (!taken[j] && (p.random_limit == 0 || j * p.block < p.random_limit)) rest[nrest++] = j;
  Rng rng(seed, streams::kPattern | (static_cast<uint64_t>(p.layer) << 48) | (static_cast<uint64_t>(h) << 36) |
                    (static_cast<uint64_t>(qb) << 18) | static_cast<uint64_t>(n));
  const int r = imin(p.random, nrest);
  for (int i = 0; i < r; ++i) {
    const int j = i + static_cast<int>(rng.below(static_cast<uint64_t>(nrest - i)));
    const int t = rest[i];
    rest[i] = rest[j];
    rest[j] = t;
    taken[rest[i]] = 1;
  }
}

// The key spans of query block qb of head h into out (pattern_max_spans entries at most); returns their
// count. work: pattern_work_ints ints. seed: the run's seed (BigBird's random blocks).
LRA_HD int pattern_key_spans(const PatternSpec& p, int n, int h, int qb, uint64_t seed, KeySpan* out, int* work) {
  int count = 0;
  switch (p.kind) {
    case PatternKind::Local: {
      const RowRange r = pattern_query_block(p, n, qb);
      out[count++] = KeySpan{r.begin, r.end, -1};
      return count;
    }
    case PatternKind::Fixed: {
      // Blocks after qb are skipped when causal (the engine would hide them anyway).
      const int last = p.causal ? qb : ceil_div(n, p.block) - 1;
      for (int j = 0; j <= last; ++j) {
        if (j == qb) {
          out[count++] = KeySpan{qb * p.block, imin(n, (qb + 1) * p.block), -1};
        } else {
          const int b = (j + 1) * p.block - p.summary, e = imin(n, (j + 1) * p.block);
          if (b < e) out[count++] = KeySpan{b, e, -1};
        }
      }
      return count;
    }
    case PatternKind::Longformer: {
      const RowRange r = pattern_query_block(p, n, qb);
      bool global_row = false;
      for (int gi = 0; gi < p.n_global; ++gi) global_row = global_row || p.global[gi] == r.begin;
      if (r.end - r.begin == 1 && global_row) {
        out[count++] = KeySpan{0, n, -1};
        return count;
      }
      // The window band [begin - radius, end + radius), cut around the global columns, which are full.
      const int lo = imax(0, r.begin - p.radius), hi = imin(n, r.end + p.radius);
      int cur = lo;
      int gi = 0;
      for (; gi < p.n_global; ++gi) {
        const int g = p.global[gi];
        if (g >= n || g >= hi) break;
        if (g >= lo && cur < g) out[count++] = KeySpan{cur, g, p.radius};
        out[count++] = KeySpan{g, g + 1, -1};
        if (g >= lo) cur = g + 1;
      }
      if (cur < hi) out[count++] = KeySpan{cur, hi, p.radius};
      for (; gi < p.n_global; ++gi) {
        const int g = p.global[gi];
        if (g >= n) break;
        out[count++] = KeySpan{g, g + 1, -1};
      }
      return count;
    }
    default: {
      bigbird_mark_blocks(p, n, h, qb, seed, work);
      const int nb = ceil_div(n, p.block);
      for (int j = 0; j < nb; ++j) {
        if (!work[j]) continue;
        const int b = j * p.block, e = imin(n, (j + 1) * p.block);
        if (count > 0 && out[count - 1].end == b)
          out[count - 1].end = e;  // adjacent blocks make one span
        else
          out[count++] = KeySpan{b, e, -1};
      }
      return count;
    }
  }
}

// The keys [*lo, *hi) of span s that query q sees: within the band, and (causal) not after q. Empty
// (*lo == *hi) when none.
LRA_HD void span_visible(const KeySpan& s, int q, bool causal, int* lo, int* hi) {
  int a = s.begin, b = s.end;
  if (s.radius >= 0) {
    a = imax(a, q - s.radius);
    b = imin(b, q + s.radius + 1);
  }
  if (causal) b = imin(b, q + 1);
  a = imin(a, s.end);
  *lo = a;
  *hi = imax(b, a);
}

}  // namespace lra
