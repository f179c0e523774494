// Nystromformer's settings and the index arithmetic shared by the CPU variant (lib/attn/nystromformer.cpp)
// and its GPU path (lib/cuda/nystromformer.cu): the segments the landmarks average, the rows one tap of the
// depthwise convolution touches, and the constants of the pseudo-inverse iteration.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/attention.h"
#include "core/host_device.h"

namespace lra {

// The resolved hyperparameters, checked (throws naming the bad setting).
struct NystromOptions {
  int landmarks = 64;
  int pinv_iters = 6;
  int conv_kernel = 35;
  bool batch_init = false;  // pinv_init=batch
  static NystromOptions parse(const AttnConfig& c);
  // The learned weights: the depthwise convolution's filters "conv" (heads x conv_kernel), none without it.
  std::vector<AttnParamSpec> param_specs(const AttnConfig& c) const;
};

// First row of segment j (0 .. m) of an n-row example split into m segments: floor(j n / m).
LRA_HD int nystrom_segment_start(int j, int n, int m) {
  return static_cast<int>(static_cast<int64_t>(j) * n / m);
}

// The segment that holds row i (0 <= i < n, n >= m): the largest j with floor(j n / m) <= i, that is
// j n < (i + 1) m, so j = floor(((i + 1) m - 1) / n).
LRA_HD int nystrom_segment_of(int i, int n, int m) {
  return static_cast<int>((static_cast<int64_t>(i + 1) * m - 1) / n);
}

// Tap t of a centred filter of `kernel` taps reads row i + off, off = t - (kernel - 1) / 2: the rows i of an
// n-row example whose source row lies in [0, n) are [*i0, *i1) (empty when *i1 <= *i0).
LRA_HD int nystrom_tap_offset(int t, int kernel) { return t - (kernel - 1) / 2; }
LRA_HD void nystrom_tap_rows(int off, int n, int* i0, int* i1) {
  *i0 = off < 0 ? -off : 0;
  *i1 = off > 0 ? n - off : n;
}

// The iteration Z <- 1/4 Z (13I - P (15I - P (7I - P))), P = A Z: U1 = 7I - P, U2 = 15I - P U1,
// U3 = 13I - P U2, Z <- kPinvScale Z U3.
constexpr int kPinvShift1 = 7;
constexpr int kPinvShift2 = 15;
constexpr int kPinvShift3 = 13;
constexpr double kPinvScale = 0.25;

}  // namespace lra
