// The pointwise feature maps of kernelised attention (docs/attention.md, section 2), written once for the
// CPU (lib/attn/cosformer.cpp, linear.cpp) and GPU (lib/cuda/kernelized_features.cu) paths.
#pragma once

#include <cmath>

#include "core/host_device.h"

namespace lra {

// cosFormer's angle of 0-based row i of an example in a batch padded to M rows: theta_i = pi/2 (i + 1)/M
// (positions count from 1, as in the official code), in double on every device, then rounded by the caller.
LRA_HD double cosformer_angle(int i, int M) { return 1.5707963267948966 * (i + 1) / static_cast<double>(M); }

// The linear transformer's phi(x) = elu(x) + 1 = exp(min(x, 0)) + max(x, 0), and its derivative from phi:
// phi'(x) = min(phi, 1) (exp(x) <= 1 for x <= 0, x + 1 > 1 for x > 0). The CPU applies the same expression
// to whole Eigen arrays, so that it vectorises.
template <class T>
LRA_HD T elu_feature(T x) {
  return std::exp(x < T(0) ? x : T(0)) + (x > T(0) ? x : T(0));
}
template <class T>
LRA_HD T elu_feature_grad(T phi) {
  return phi < T(1) ? phi : T(1);
}

}  // namespace lra
