// Sparse Sinkhorn attention: the options both implementations parse (lib/attn/sinkhorn.cpp on the CPU,
// lib/cuda/sinkhorn.cu on the GPU) and the maths they share as LRA_HD functions, so the main (CPU) test
// suite exercises the expressions the GPU kernels run. The formulas are in sinkhorn.cpp's header.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "attn/attention.h"
#include "core/host_device.h"

namespace lra {

// The resolved hyperparameters of one variant instance (checked by parse, with the messages both devices
// give). Trivially copyable: the GPU kernels take it by value.
struct SinkhornOptions {
  int block = 50;       // w: rows per block
  int max_blocks = 1;   // the sort net's outputs (one per query block)
  int blocks = 1;       // ceil(max_len / w): the most blocks an example may have
  int iters = 1;        // Sinkhorn iterations
  double temperature = 1.0;
  bool mlp = true;      // sort_net: mlp (per head) or linear (one W for all heads)
  bool balance = true;  // sort_activation: sinkhorn (rows and columns) or softmax (columns once)
  int parts = 1;        // combine: 1 = joint (one softmax), 2 = sum (a softmax per half)

  // Throws for a bad setting, naming it and its valid values.
  static SinkhornOptions parse(const AttnConfig& c);
  // mlp: sort_w1 (H, dk, dk), sort_b1 (H, dk), sort_w2 (H, dk, max_blocks), sort_b2 (H, max_blocks);
  // linear: sort_w (dk, max_blocks).
  std::vector<AttnParamSpec> param_specs(const AttnConfig& c) const;

  // Normalisation steps: a row and a column step per iteration, or one column step (softmax).
  LRA_HD int steps() const { return balance ? 2 * iters : 1; }
  // Step k (1-based) normalises rows (each key block over query blocks) or columns.
  LRA_HD bool row_step(int k) const { return balance && k % 2 == 1; }
  // The score columns of softmax part p: [0, 2w) when joint; [0, w) and [w, 2w) when summed.
  LRA_HD int part_begin(int p) const { return p * 2 * block / parts; }
  LRA_HD int part_end(int p) const { return (p + 1) * 2 * block / parts; }
  // Columns of one row of the weight-gradient factor table: s, A1, dZ1, dZ2 (mlp) or s, dR (linear).
  LRA_HD int slot_width(int dk) const { return (mlp ? 3 * dk : dk) + max_blocks; }
};

// Block-indexed tables (the factor table; the GPU's per-block arrays) give example b, whose rows start at
// packed row `offset`, the rows offset / w + b onwards: its ceil(n / w) <= floor(n / w) + 1 blocks never
// reach the next example's first row. A table for B examples and `rows` packed rows has rows / w + B.
LRA_HD int64_t sinkhorn_block_base(int64_t offset, int w, int b) { return offset / w + b; }
LRA_HD int64_t sinkhorn_table_blocks(int B, int64_t rows, int w) { return rows / w + B; }

// One Sinkhorn normalisation in log space along a line of n >= 1 values at `stride`:
// y = x - lse(x), lse(x) = max + log sum exp(x - max). x and y may be the same line.
template <class T>
LRA_HD void sinkhorn_normalise(const T* x, T* y, int n, int64_t stride) {
  T mx = x[0];
  for (int i = 1; i < n; ++i) mx = x[i * stride] > mx ? x[i * stride] : mx;
  T sum = T(0);
  for (int i = 0; i < n; ++i) sum += std::exp(x[i * stride] - mx);
  const T lse = mx + std::log(sum);
  for (int i = 0; i < n; ++i) y[i * stride] = x[i * stride] - lse;
}

// Its backward, in place on the line's gradient d (dY in, dX out), y the step's output:
// dX = dY - exp(Y) sum(dY).
template <class T>
LRA_HD void sinkhorn_normalise_backward(T* d, const T* y, int n, int64_t stride) {
  T sum = T(0);
  for (int i = 0; i < n; ++i) sum += d[i * stride];
  for (int i = 0; i < n; ++i) d[i * stride] -= sum * std::exp(y[i * stride]);
}

// Softmax in place over n scores of one part of a query's row, hidden scores at -inf; returns the
// log-sum-exp, or +inf with every weight 0 when the part sees no key.
template <class T>
LRA_HD T sinkhorn_softmax(T* s, int n) {
  const T inf = std::numeric_limits<T>::infinity();
  T mx = -inf;
  for (int c = 0; c < n; ++c) mx = s[c] > mx ? s[c] : mx;
  if (mx == -inf) {
    for (int c = 0; c < n; ++c) s[c] = T(0);
    return inf;
  }
  T sum = T(0);
  for (int c = 0; c < n; ++c) {
    s[c] = std::exp(s[c] - mx);  // exp(-inf) = 0 for the hidden scores
    sum += s[c];
  }
  for (int c = 0; c < n; ++c) s[c] /= sum;
  return mx + std::log(sum);
}

// The scores' gradient of one softmax part, in place on g (dP in, dS out): D = sum_c p_c g_c,
// dS_c = p_c (g_c - D).
template <class T>
LRA_HD void sinkhorn_score_grad(const T* p, T* g, int n) {
  T D = T(0);
  for (int c = 0; c < n; ++c) D += p[c] * g[c];
  for (int c = 0; c < n; ++c) g[c] = p[c] * (g[c] - D);
}

}  // namespace lra
