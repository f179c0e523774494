// The linear transformer (Katharopoulos et al., ICML 2020): kernelised attention (kernelized.h) with
// phi(x) = elu(x) + 1, m = dk, and the normaliser D + eps of the reference code (idiap
// fast-transformers, LRA). Nothing is random; phi > 0, so eps only guards underflow and all-masked rows.
//
//   phi(x) = x + 1 (x > 0), exp(x) (x <= 0)
//   backward: dx = dphi (x > 0), dphi phi(x) (x <= 0), i.e. dphi min(phi(x), 1)
#include "attn/kernelized.h"
#include "ops/parallel.h"

namespace lra {

namespace {

template <class T>
class EluFeatures final : public FeatureMap<T> {
 public:
  explicit EluFeatures(int dk) : dk_(dk) {}
  int features() const override { return dk_; }

  void map(const FeatureRows<T>& in, T* phi, T*, int64_t*) const override {
    CMapR<T> X(in.x, in.L, dk_, Eigen::OuterStride<>(in.ld));
    MapR<T> P(phi, in.L, dk_, Eigen::OuterStride<>(dk_));
    // elu_feature (attn/feature_maps.h) on the whole array, so that Eigen vectorises it.
    P = (X.array().min(T(0)).exp() + X.array().max(T(0))).matrix();
  }

  void map_backward(const FeatureRows<T>& in, const T* phi, T* dphi, T* dx, int64_t ld_dx, T*,
                    const int64_t*) const override {
    // elu_feature_grad on the whole array.
    CMapR<T> P(phi, in.L, dk_, Eigen::OuterStride<>(dk_));
    CMapR<T> dP(dphi, in.L, dk_, Eigen::OuterStride<>(dk_));
    MapR<T> dX(dx, in.L, dk_, Eigen::OuterStride<>(ld_dx));
    dX = (dP.array() * P.array().min(T(1))).matrix();
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
