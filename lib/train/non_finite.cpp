#include "train/non_finite.h"

#include <fmt/format.h>

#include <cmath>

#include "core/check.h"

namespace lra {

namespace {

std::string layer_of(const std::string& name) {
  const size_t dot = name.find('.');
  if (name.compare(0, 7, "layers.") == 0) return name.substr(0, name.find('.', 7));
  return name.substr(0, dot);
}

}  // namespace

std::optional<NonFiniteGrad> find_non_finite_grad(const std::vector<Model<float>::Param>& params,
                                                  const std::vector<float>& grads) {
  std::vector<int64_t> offset(params.size() + 1, 0);
  for (size_t i = 0; i < params.size(); ++i) offset[i + 1] = offset[i] + params[i].size;
  LRA_CHECK(static_cast<size_t>(offset.back()) == grads.size(), "{} gradient values for {} parameters",
            grads.size(), offset.back());
  std::optional<NonFiniteGrad> found;
  for (size_t i = params.size(); i-- > 0;) {
    for (int64_t k = 0; k < params[i].size; ++k) {
      const float g = grads[static_cast<size_t>(offset[i] + k)];
      if (std::isfinite(g)) continue;
      if (!found) found = NonFiniteGrad{params[i].name, layer_of(params[i].name), k, g, 0};
      ++found->tensors;
      break;
    }
  }
  return found;
}

std::string number_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{}", v);
}

}  // namespace lra
