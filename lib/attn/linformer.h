// Linformer's options and learned weights, one definition for the CPU variant (linformer.cpp) and the
// GPU one (lib/cuda/linformer.cu).
#pragma once

#include <vector>

#include "attn/attention.h"

namespace lra {

struct LinformerOptions {
  int k = 0;  // the projected length
  // Throws, naming the setting and what it may be, for a bad value.
  static LinformerOptions parse(const AttnConfig& c);
  // E: max_len x k ("proj"), LRA's xavier_uniform (U(+-sqrt(6 / (max_len + k)))): K' = E[:n]^T K sums n
  // rows of variance 2 / (max_len + k), so K' keeps about the magnitude of K.
  std::vector<AttnParamSpec> param_specs(const AttnConfig& c) const;
};

}  // namespace lra
