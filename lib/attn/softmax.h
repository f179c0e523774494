// Exact softmax attention's options, parsed once for the CPU (softmax.cpp) and GPU (lib/cuda/softmax.cu)
// paths.
#pragma once

#include "attn/attention.h"

namespace lra {

struct SoftmaxOptions {
  bool causal = false;
  bool store_probs = false;  // keep P for the backward (the standard implementation; CPU only)
  static SoftmaxOptions parse(const AttnConfig& c);
};

}  // namespace lra
