// Reformer LSH attention: what the CPU implementation (lib/attn/reformer.cpp, where the maths is written
// out) and the GPU one (lib/cuda/reformer.cu) share, so that both read the same settings, draw the same
// rotations, cut the same chunks and evaluate the same element-wise expressions (LRA_HD: the main CPU test
// suite exercises the expressions the GPU kernels run).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "attn/attention.h"
#include "core/host_device.h"

namespace lra::reformer {

// The resolved hyperparameters, checked: chunk is clamped to max_len (a chunk longer than every example is
// one chunk) and chunks_before to hashes * max_len (more than G - 1 chunks before is all of them).
struct ReformerOptions {
  int hashes = 1, buckets = 2, chunk = 0, before = 0;
  bool causal = false, self_mask = true, norm_keys = true, code_logit_scale = false;
  // Throws, naming the setting and its valid range, for a bad value.
  static ReformerOptions parse(const AttnConfig& c);
};

// The counter-RNG stream of round r's rotations at training step t in layer l: this file's own tag 0x52
// in the top byte (core/rng.h's streams use 1, 2, 3, 5, 6 and 7 there), l in bits 40-55, r in bits 32-39
// and the low 32 bits of t.
inline uint64_t rotation_stream(int layer, int round, int64_t step) {
  return (0x52ull << 56) | (static_cast<uint64_t>(layer) << 40) | (static_cast<uint64_t>(round) << 32) |
         (static_cast<uint64_t>(step) & 0xffffffffull);
}

// Round r's rotations R_r (dk x buckets/2, row-major, standard normals) for every round, into
// rot[r * dk * half + f * half + k], drawn from Rng(seed, rotation_stream(layer, r, step)).
void draw_rotations(const ReformerOptions& s, int dk, int layer, uint64_t seed, int64_t step, double* rot);

// The chunk layout of one (example, head) with m visible keys (all zero when m = 0).
struct Chunks {
  int m = 0;   // visible keys
  int c = 0;   // chunk length
  int nc = 0;  // chunks per round
  int G = 0;   // chunks over all rounds
  int kb = 0;  // chunks before that a chunk sees
};

LRA_HD Chunks make_chunks(int m, int chunk, int buckets, int hashes, int before) {
  Chunks a;
  a.m = m;
  if (m == 0) return a;
  a.c = chunk > 0 ? (chunk < m ? chunk : m) : (m + buckets - 1) / buckets;
  a.nc = (m + a.c - 1) / a.c;
  a.G = hashes * a.nc;
  a.kb = before < a.G - 1 ? before : a.G - 1;
  return a;
}

// The chunk (within its round) of a query whose rank among the round's sorted visible keys is s.
LRA_HD int query_chunk(const Chunks& a, int s) {
  const int t = s / a.c;
  return t < a.nc - 1 ? t : a.nc - 1;
}

// The k-th chunk before chunk g (0 <= k <= kb), wrapping from the first chunk to the last across rounds.
LRA_HD int chunk_before(const Chunks& a, int g, int k) { return ((g - k) % a.G + a.G) % a.G; }

// Whether hash value y at index k beats the best so far (top at index best): larger, or equal at a smaller
// index, so that the winner is the first maximum (a NaN never wins).
template <class T>
LRA_HD bool bucket_beats(T y, int k, T top, int best) {
  return y > top || (y == top && k < best);
}

// Whether query i keeps the entry of key j: causal drops j > i, self_mask drops j = i (a query left with
// no entry at all then attends to itself alone, see `alone`).
LRA_HD bool entry_kept(int j, int i, bool causal, bool self_mask) {
  return !(causal && j > i) && !(self_mask && j == i);
}

// A query with no entry left outputs its own value when self_mask dropped it and its key is visible.
LRA_HD bool alone(bool self_mask, bool visible) { return self_mask && visible; }

// 1 / |q|, or 0 for q = 0 (whose unit key is then 0).
template <class T>
LRA_HD T inv_norm(T norm) {
  return norm > T(0) ? T(1) / norm : T(0);
}

// log(e^a + e^b) for the running log-sum-exp over rounds: a = -inf (no entry yet) gives b.
template <class T>
LRA_HD T lse_add(T a, T b) {
  if (a == -std::numeric_limits<T>::infinity()) return b;
  const T hi = a > b ? a : b;
  return hi + std::log1p(std::exp(-std::fabs(a - b)));
}

// One column of dq_j's key part from dk^_j: (dk^ - k^ (k^ . dk^)) / |q_j| with norm_keys (dot = k^ . dk^,
// inv = 1 / |q_j|), dk^ itself without.
template <class T>
LRA_HD T key_grad(T dkhat, T khat, T dot, T inv, bool norm_keys) {
  return norm_keys ? (dkhat - khat * dot) * inv : dkhat;
}

}  // namespace lra::reformer
