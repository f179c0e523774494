// The per-element maths of attention dropout and of a softmax over materialised logit rows, written once for
// the CPU (lib/attn) and GPU (lib/cuda) paths, so the main test suite checks the expressions the GPU runs
// and both devices draw the same masks.
//   forward:  P' = P z,  z = 1/(1-p) where the element's Philox word keeps it, 0 where it drops it
//   backward: dS = P (dP z - D),  D = dO . O of the query row
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "core/rng.h"

namespace lra {

// The element of a call's Philox stream (seed, stream) that decides the dropout of query row r (packed),
// head h, column 0; column j adds j. The row is counted in the global batch (rows maps the call's rows
// there, RowMap), so a process's share of a batch draws the one-process masks. Each (row, head) owns
// `width` consecutive elements: the padded length for exact and block-sparse attention and the
// synthesizer, the projected length k for Linformer, 2w (a block and its sorted partner) for Sinkhorn.
LRA_HD uint64_t dropout_element(const RowMap& rows, int64_t r, int h, int heads, int64_t width) {
  return (static_cast<uint64_t>(rows(r)) * static_cast<uint64_t>(heads) + static_cast<uint64_t>(h)) *
         static_cast<uint64_t>(width);
}

// Attention dropout's factor for an element with Philox word `word`: `scale` (1/(1-p)) when kept,
// 0 when dropped (thr = dropout_threshold(p)).
template <class T>
LRA_HD T dropout_factor(uint32_t word, uint32_t thr, T scale) {
  return dropout_keeps(word, thr) ? scale : T(0);
}

// The gradient of a softmax logit: dS = P (dP z - D), with P the probability before dropout, dP the
// gradient of the kept probability P' = P z, z the dropout factor (1 without dropout) and D = dO . O.
template <class T>
LRA_HD T softmax_dlogit(T p, T dp, T z, T d) {
  return p * (dp * z - d);
}

}  // namespace lra
