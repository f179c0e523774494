// The per-element maths of a softmax over materialised logit rows with attention dropout, shared by the
// CPU (lib/attn/linformer.cpp, synthesizer.cpp) and GPU (lib/cuda/linformer.cu, synthesizer.cu) paths
// of the variants that store their logits, so the main test suite checks the expressions the GPU runs.
//   forward:  P' = P z,  z = 1/(1-p) where the element's Philox word keeps it, 0 where it drops it
//   backward: dS = P (dP z - D),  D = dO . O of the query row
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "core/rng.h"

namespace lra {

// Attention dropout's factor for an element with Philox word `word`: `scale` (1/(1-p)) when kept,
// 0 when dropped (thr = dropout_threshold(p)).
template <class T>
LRA_HD T dropout_factor(uint32_t word, uint32_t thr, T scale) {
  return (word >> 8) >= thr ? scale : T(0);
}

// The gradient of a softmax logit: dS = P (dP z - D), with P the probability before dropout, dP the
// gradient of the kept probability P' = P z, z the dropout factor (1 without dropout) and D = dO . O.
template <class T>
LRA_HD T softmax_dlogit(T p, T dp, T z, T d) {
  return p * (dp * z - d);
}

}  // namespace lra
