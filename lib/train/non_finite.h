// Where a gradient went NaN or infinite, for the error and the record of a run that stops on one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"

namespace lra {

struct NonFiniteGrad {
  std::string parameter;  // the tensor, e.g. "layers.1.attn.qkv.weight"
  std::string layer;      // its block ("layers.1") or part ("embed", "final_ln", "head")
  int64_t index = 0;      // flat index of its first non-finite element
  double value = 0.0;     // that element: NaN or an infinity
  int tensors = 0;        // how many parameter tensors hold a non-finite gradient element
};

// Scans `grads` (a host copy of the model's gradient block, its tensors packed in the order of
// `params`) in the order the backward pass writes them, output first: the tensor it reports is the
// one nearest the output, where the NaN or infinity entered. Empty when every element is finite.
std::optional<NonFiniteGrad> find_non_finite_grad(const std::vector<Model<float>::Param>& params,
                                                  const std::vector<float>& grads);

// "nan", "inf" or "-inf" (JSON has no such numbers); other values as fmt prints them.
std::string number_text(double v);

}  // namespace lra
