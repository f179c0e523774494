// Parameter initialisers, shared by the model and anything else that owns parameters (attention
// variants with learned weights declare theirs with one of these).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/rng.h"

namespace lra {

// Normal: N(0, scale^2). XavierUniform: U(-a, a) with a = sqrt(6 / scale), scale = fan_in + fan_out.
// Uniform: U(-scale, scale).
enum class Init { Zeros, Ones, Normal, XavierUniform, Uniform };

template <class T>
void fill_init(T* out, int64_t n, Init init, double scale, Rng& rng) {
  for (int64_t i = 0; i < n; ++i) {
    double v = 0.0;
    switch (init) {
      case Init::Zeros:
        break;
      case Init::Ones:
        v = 1.0;
        break;
      case Init::Normal:
        v = rng.normal() * scale;
        break;
      case Init::XavierUniform:
        v = (2.0 * rng.uniform() - 1.0) * std::sqrt(6.0 / scale);
        break;
      case Init::Uniform:
        v = (2.0 * rng.uniform() - 1.0) * scale;
        break;
    }
    out[i] = static_cast<T>(v);
  }
}

}  // namespace lra
