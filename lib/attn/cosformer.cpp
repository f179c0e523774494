// cosFormer (Qin et al., ICLR 2022): ReLU features re-weighted by cos(pi/2 (i - j)/M), decomposed with
// cos(a - b) = cos a cos b + sin a sin b into one kernelised attention over m = 2 dk features
// (kernelized.h). As in the official code: positions count from 1, theta_i = pi/2 i/M with M the
// padded length, and the normaliser is clamped, max(D, eps). Causal mode uses the same features.
//
//   phi(x_i) = [relu(x_i) sin(theta_i) | relu(x_i) cos(theta_i)]
//   backward: dx_i = [x_i > 0] (sin(theta_i) dphi_sin + cos(theta_i) dphi_cos)
#include <cmath>

#include "attn/feature_maps.h"
#include "attn/kernelized.h"
#include "ops/math.h"

namespace lra {

namespace {

template <class T>
class CosformerFeatures final : public FeatureMap<T> {
 public:
  explicit CosformerFeatures(int dk) : dk_(dk) {}
  int features() const override { return 2 * dk_; }

  void map(const FeatureRows<T>& in, T* phi, T*, int64_t*) const override {
    for (int i = 0; i < in.L; ++i) {
      T sn, cs;
      angles(i, in.L_pad, &sn, &cs);
      const T* x = in.x + i * in.ld;
      T* p = phi + static_cast<int64_t>(i) * 2 * dk_;
      for (int c = 0; c < dk_; ++c) {
        const T r = relu(x[c]);
        p[c] = r * sn;
        p[dk_ + c] = r * cs;
      }
    }
  }

  void map_backward(const FeatureRows<T>& in, const T*, T* dphi, T* dx, int64_t ld_dx, T*,
                    const int64_t*) const override {
    for (int i = 0; i < in.L; ++i) {
      T sn, cs;
      angles(i, in.L_pad, &sn, &cs);
      const T* x = in.x + i * in.ld;
      const T* d = dphi + static_cast<int64_t>(i) * 2 * dk_;
      T* out = dx + i * ld_dx;
      for (int c = 0; c < dk_; ++c) out[c] = x[c] > T(0) ? sn * d[c] + cs * d[dk_ + c] : T(0);
    }
  }

 private:
  static void angles(int i, int M, T* sn, T* cs) {
    const double theta = cosformer_angle(i, M);
    *sn = static_cast<T>(std::sin(theta));
    *cs = static_cast<T>(std::cos(theta));
  }
  int dk_;
};

template <class T>
class CosformerAttention final : public KernelizedAttention<T> {
 public:
  explicit CosformerAttention(const AttnConfig& c)
      : KernelizedAttention<T>(c, std::make_unique<CosformerFeatures<T>>(c.dk), Guard::Clamp) {}
};

}  // namespace

AttnInfo cosformer_attention_info() {
  AttnInfo info;
  info.name = "cosformer";
  info.summary =
      "cosFormer (Qin et al. 2022): ReLU features with cos re-weighting pi/2 (i-j)/M, M = padded length, "
      "positions from 1, normaliser max(D, eps) as in the official code; no attention weights to drop";
  info.complexity = "time O(L d^2), memory O(L d)";
  info.params = {causal_param(), {"eps", 1e-6, "clamp of the normaliser: O = N / max(D, eps)"}};
  return make_attn_info<CosformerAttention>(info);
}

}  // namespace lra
