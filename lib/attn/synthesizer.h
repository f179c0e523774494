// Synthesizer's options and learned weights, one definition for the CPU variant (synthesizer.cpp) and the
// GPU one (lib/cuda/synthesizer.cu).
#pragma once

#include <vector>

#include "attn/attention.h"

namespace lra {

enum class SynthesizerMode { Random, Factorized, Dense };

struct SynthesizerOptions {
  SynthesizerMode mode = SynthesizerMode::Random;
  bool causal = false;
  bool dot_product = true;  // add the query-key scores to the synthesised logits
  int k = 0;                // the factorized mode's rank
  // Throws, naming the setting and what it may be, for a bad value.
  static SynthesizerOptions parse(const AttnConfig& c);
  // The mode's weights, initialised as LRA's synthesizer block does (xavier_uniform, with JAX's fans of a
  // 3-d shape: the head axis multiplies both); its dense layers there have no bias, here the biases start
  // at zero.
  std::vector<AttnParamSpec> param_specs(const AttnConfig& c) const;
};

}  // namespace lra
