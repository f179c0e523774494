// The linear transformer (Katharopoulos et al., ICML 2020): kernelised attention (kernelized.h) with
// phi(x) = elu(x) + 1, m = dk, and the normaliser D + eps of the reference code (idiap
// fast-transformers, LRA). Nothing is random; phi > 0, so eps only guards underflow and all-masked rows.
//
//   phi(x) = x + 1 (x > 0), exp(x) (x <= 0)
//   backward: dx = dphi (x > 0), dphi phi(x) (x <= 0)
#include <cmath>

#include "attn/kernelized.h"

namespace lra {

namespace {

template <class T>
class EluFeatures final : public FeatureMap<T> {
 public:
  explicit EluFeatures(int dk) : dk_(dk) {}
  int features() const override { return dk_; }

  void map(const FeatureRows<T>& in, T* phi, T*, int64_t*) const override {
    for (int i = 0; i < in.L; ++i) {
      const T* x = in.x + i * in.ld;
      T* p = phi + static_cast<int64_t>(i) * dk_;
      for (int c = 0; c < dk_; ++c) p[c] = x[c] > T(0) ? x[c] + T(1) : std::exp(x[c]);
    }
  }

  void map_backward(const FeatureRows<T>& in, const T* phi, T* dphi, T* dx, int64_t ld_dx, T*,
                    const int64_t*) const override {
    for (int i = 0; i < in.L; ++i) {
      const T* x = in.x + i * in.ld;
      const T* p = phi + static_cast<int64_t>(i) * dk_;
      const T* d = dphi + static_cast<int64_t>(i) * dk_;
      T* out = dx + i * ld_dx;
      for (int c = 0; c < dk_; ++c) out[c] = x[c] > T(0) ? d[c] : d[c] * p[c];
    }
  }

 private:
  int dk_;
};

template <class T>
class LinearAttention final : public KernelizedAttention<T> {
 public:
  explicit LinearAttention(const AttnConfig& c)
      : KernelizedAttention<T>(c, std::make_unique<EluFeatures<T>>(c.dk), Guard::Add) {}
};

}  // namespace

AttnInfo linear_attention_info() {
  AttnInfo info;
  info.name = "linear";
  info.summary =
      "linear transformer (Katharopoulos et al. 2020): phi(x) = elu(x) + 1, O = N / (D + eps) as in the "
      "reference code; no attention weights to drop";
  info.complexity = "time O(L d^2), memory O(L d)";
  info.params = {causal_param(), {"eps", 1e-6, "added to the normaliser: O = N / (D + eps)"}};
  return make_attn_info<LinearAttention>(info);
}

}  // namespace lra
