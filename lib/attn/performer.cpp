// Performer (Choromanski et al., ICLR 2021): kernelised attention (kernelized.h) with random features.
//
// `performer`, FAVOR+ positive random features for the softmax kernel (docs/attention.md, 4.1):
//   xh = dk^-1/4 x,  u = W xh (m values),  h = |xh|^2 / 2
//   phi(x)_r = m^-1/2 (exp(u_r - h - s) + feature_eps)
//   s = max_r u_r per query row; for keys one s per (example, head): the max over all real keys and r,
//   or, causal, over the first real key only. The shift cancels in O except through feature_eps and the
//   clamp of D, so a max over all keys (the official code's choice) would let future keys change past
//   outputs; the first key is in every query's past. Causal keys far larger than the first can overflow
//   exp in float: the loss then turns non-finite and the run stops saying so.
//   backward (the true gradient, including the path through s to the argmax):
//     dU = m^-1/2 dphi E with E = exp(u - h - s) = m^1/2 phi - feature_eps,  dh = -rowsum(dU)
//     dU[argmax] += ds with ds = -sum(dU) over the row (query) or over all rows (key)
//     dx = dk^-1/4 (dU W + dh xh)
// `performer-relu`, generalized attention with the ReLU kernel (4.4):
//   features = 0 (LRA's code): phi(x) = relu(x) + kernel_eps;  dx = [x > 0] dphi
//   features = m: phi(x) = relu(W xh) + kernel_eps;           dx = dk^-1/4 ([W xh > 0] dphi) W
// W (m x dk) is not trained; it is drawn from (run seed, layer, draw) with orthogonal blocks
// (random_features.h) and redrawn as the `redraw` policy says, before each training forward.
#include <cmath>
#include <limits>

#include "attn/kernelized.h"
#include "attn/random_features.h"
#include "ops/math.h"
#include "ops/parallel.h"

namespace lra {

namespace {

// The projection W of one layer and when to redraw it.
template <class T>
class Projection {
 public:
  Projection(const AttnConfig& c, const PerformerOptions& o)
      : m_(o.features), dk_(c.dk), layer_(c.layer), orthogonal_(o.orthogonal), policy_(o.redraw) {}

  void prepare(const AttnStep& step) {
    if (fixed_) return;
    const int64_t draw = policy_.draw(step.step);
    if (drawn_ && seed_ == step.seed && draw_ == draw) return;
    set(draw_projection(m_, dk_, orthogonal_, step.seed, layer_, draw));
    drawn_ = true;
    seed_ = step.seed;
    draw_ = draw;
  }
  void fix(const std::vector<double>& w) {
    LRA_CHECK(static_cast<int64_t>(w.size()) == static_cast<int64_t>(m_) * dk_,
              "random features: expected {} x {} = {} values, got {}", m_, dk_, m_ * dk_, w.size());
    set(w);
    fixed_ = true;
  }
  const MatR<T>& W() const { return W_; }
  // dk^-1/4, the input scaling of every projected feature map.
  T scale() const { return scale_; }
  // xh = dk^-1/4 x of the rows, into scratch (L x dk).
  MapR<T> scaled(const FeatureRows<T>& in, T* scratch) const {
    MapR<T> Xh(scratch, in.L, dk_, Eigen::OuterStride<>(dk_));
    Xh = CMapR<T>(in.x, in.L, dk_, Eigen::OuterStride<>(in.ld)) * scale_;
    return Xh;
  }

 private:
  void set(const std::vector<double>& w) {
    W_.resize(m_, dk_);
    for (int r = 0; r < m_; ++r)
      for (int j = 0; j < dk_; ++j) W_(r, j) = static_cast<T>(w[static_cast<size_t>(r) * dk_ + j]);
  }
  int m_, dk_, layer_;
  T scale_ = T(1) / std::pow(static_cast<T>(dk_), T(0.25));
  bool orthogonal_;
  RedrawPolicy policy_;
  MatR<T> W_;
  bool fixed_ = false, drawn_ = false;
  uint64_t seed_ = 0;
  int64_t draw_ = 0;
};

template <class T>
class SoftmaxFeatures final : public FeatureMap<T> {
 public:
  explicit SoftmaxFeatures(const AttnConfig& c) : SoftmaxFeatures(c, PerformerOptions::parse(c)) {}
  SoftmaxFeatures(const AttnConfig& c, const PerformerOptions& o)
      : m_(o.features),
        dk_(c.dk),
        feps_(static_cast<T>(o.eps)),
        causal_(KernelizedOptions::parse(c).causal),
        proj_(c, o) {}

  int features() const override { return m_; }
  // xh (L x dk), then dh (L) in the backward.
  size_t scratch_elems(int L) const override { return static_cast<size_t>(L) * (dk_ + 1); }
  void prepare(const AttnStep& step) override { proj_.prepare(step); }
  void set_random_features(const std::vector<double>& w) override { proj_.fix(w); }

  void map(const FeatureRows<T>& in, T* phi, T* scratch, int64_t* aux) const override {
    const int L = in.L;
    MapR<T> Xh = proj_.scaled(in, scratch);
    MapR<T> U(phi, L, m_, Eigen::OuterStride<>(m_));
    U.noalias() = Xh * proj_.W().transpose();
    const T isq = T(1) / std::sqrt(static_cast<T>(m_));
    if (!in.key) {
      for (int i = 0; i < L; ++i) {
        Eigen::Index r;
        const T s = U.row(i).maxCoeff(&r);
        aux[i] = r;
        const T shift = T(0.5) * Xh.row(i).squaredNorm() + s;
        U.row(i) = (((U.row(i).array() - shift).exp() + feps_) * isq).matrix();
      }
      return;
    }
    // One stabiliser for all keys of this (example, head): the largest u over real keys or, causal,
    // over the first real key alone (every query that sees any key sees that one).
    T s = -std::numeric_limits<T>::infinity();
    int64_t arg = -1;
    for (int i = 0; i < L; ++i) {
      if (in.mu != nullptr && in.mu[i] == 0) continue;
      Eigen::Index r;
      const T v = U.row(i).maxCoeff(&r);
      if (v > s) {
        s = v;
        arg = static_cast<int64_t>(i) * m_ + r;
      }
      if (causal_) break;
    }
    aux[0] = arg;
    if (arg < 0) s = T(0);
    for (int i = 0; i < L; ++i) {
      if (in.mu != nullptr && in.mu[i] == 0) continue;
      const T shift = T(0.5) * Xh.row(i).squaredNorm() + s;
      U.row(i) = (((U.row(i).array() - shift).exp() + feps_) * isq).matrix();
    }
  }

  void map_backward(const FeatureRows<T>& in, const T* phi, T* dphi, T* dx, int64_t ld_dx, T* scratch,
                    const int64_t* aux) const override {
    const int L = in.L;
    MapR<T> Xh = proj_.scaled(in, scratch);
    T* dh = scratch + static_cast<int64_t>(L) * dk_;
    CMapR<T> P(phi, L, m_, Eigen::OuterStride<>(m_));
    MapR<T> dU(dphi, L, m_, Eigen::OuterStride<>(m_));
    MapR<T> dX(dx, L, dk_, Eigen::OuterStride<>(ld_dx));
    const T isq = T(1) / std::sqrt(static_cast<T>(m_)), sq = std::sqrt(static_cast<T>(m_));
    // dU = m^-1/2 dphi (m^1/2 phi - feature_eps); the h and s paths each take -rowsum(dU).
    dU = (dU.array() * (P.array() * sq - feps_) * isq).matrix();
    T ds_key = 0;
    for (int i = 0; i < L; ++i) {
      dh[i] = -dU.row(i).sum();
      ds_key += dh[i];
    }
    if (!in.key) {
      for (int i = 0; i < L; ++i) dU(i, aux[i]) += dh[i];
    } else if (aux[0] >= 0) {
      dU(aux[0] / m_, aux[0] % m_) += ds_key;
    }
    dX.noalias() = dU * proj_.W();
    for (int i = 0; i < L; ++i) dX.row(i) = (dX.row(i) + dh[i] * Xh.row(i)) * proj_.scale();
  }

 private:

  int m_, dk_;
  T feps_;
  bool causal_;
  Projection<T> proj_;
};

template <class T>
class ReluFeatures final : public FeatureMap<T> {
 public:
  explicit ReluFeatures(const AttnConfig& c) : ReluFeatures(c, PerformerOptions::parse_relu(c)) {}
  ReluFeatures(const AttnConfig& c, const PerformerOptions& o)
      : m_(o.features), dk_(c.dk), keps_(static_cast<T>(o.eps)) {
    if (m_ > 0) proj_.reset(new Projection<T>(c, o));
  }

  int features() const override { return m_ > 0 ? m_ : dk_; }
  size_t scratch_elems(int L) const override { return m_ > 0 ? static_cast<size_t>(L) * (dk_ + m_) : 0; }
  void prepare(const AttnStep& step) override {
    if (proj_) proj_->prepare(step);
  }
  void set_random_features(const std::vector<double>& w) override {
    LRA_CHECK(proj_ != nullptr, "performer-relu with features=0 has no random features to set");
    proj_->fix(w);
  }

  void map(const FeatureRows<T>& in, T* phi, T* scratch, int64_t*) const override {
    if (!proj_) {
      for (int i = 0; i < in.L; ++i) {
        const T* x = in.x + i * in.ld;
        T* p = phi + static_cast<int64_t>(i) * dk_;
        for (int c = 0; c < dk_; ++c) p[c] = relu(x[c]) + keps_;
      }
      return;
    }
    MapR<T> U(phi, in.L, m_, Eigen::OuterStride<>(m_));
    project(in, scratch, U);
    U = (U.array().max(T(0)) + keps_).matrix();
  }

  void map_backward(const FeatureRows<T>& in, const T*, T* dphi, T* dx, int64_t ld_dx, T* scratch,
                    const int64_t*) const override {
    if (!proj_) {
      for (int i = 0; i < in.L; ++i) {
        const T* x = in.x + i * in.ld;
        const T* d = dphi + static_cast<int64_t>(i) * dk_;
        T* out = dx + i * ld_dx;
        for (int c = 0; c < dk_; ++c) out[c] = x[c] > T(0) ? d[c] : T(0);
      }
      return;
    }
    MapR<T> U(scratch + static_cast<int64_t>(in.L) * dk_, in.L, m_, Eigen::OuterStride<>(m_));
    project(in, scratch, U);
    MapR<T> dU(dphi, in.L, m_, Eigen::OuterStride<>(m_));
    for (int64_t i = 0; i < static_cast<int64_t>(in.L) * m_; ++i) dphi[i] = U.data()[i] > T(0) ? dphi[i] : T(0);
    MapR<T> dX(dx, in.L, dk_, Eigen::OuterStride<>(ld_dx));
    dX.noalias() = (dU * proj_->W()) * proj_->scale();
  }

 private:
  // U = (dk^-1/4 x) W^T, with the scaled rows in scratch (L x dk).
  void project(const FeatureRows<T>& in, T* scratch, MapR<T>& U) const {
    U.noalias() = proj_->scaled(in, scratch) * proj_->W().transpose();
  }

  int m_, dk_;
  T keps_;
  std::unique_ptr<Projection<T>> proj_;
};

template <class T>
class PerformerAttention final : public KernelizedAttention<T> {
 public:
  explicit PerformerAttention(const AttnConfig& c)
      : KernelizedAttention<T>(c, std::make_unique<SoftmaxFeatures<T>>(c), Guard::Clamp) {}
};

template <class T>
class PerformerReluAttention final : public KernelizedAttention<T> {
 public:
  explicit PerformerReluAttention(const AttnConfig& c)
      : KernelizedAttention<T>(c, std::make_unique<ReluFeatures<T>>(c), Guard::Clamp) {}
};

std::vector<HyperParam> projection_params(int features) {
  return {{"features", features,
           features > 0 ? "m, the number of random features"
                        : "m random features through a projection; 0 = none, phi(x) = relu(x) + kernel_eps (LRA's code)"},
          {"orthogonal", true, "orthogonal random features (blocks of dk, chi-distributed row norms); false = i.i.d."},
          {"redraw", "step", "when the projection is redrawn: step, interval:N (training steps) or never"}};
}

}  // namespace

AttnInfo performer_attention_info() {
  AttnInfo info;
  info.name = "performer";
  info.summary =
      "Performer FAVOR+ (Choromanski et al. 2021): positive orthogonal random features for the softmax kernel, "
      "max-subtracted, exact gradient through Q and K; LRA's code runs this kernel on ListOps only (with "
      "features=2), see performer-relu for the other tasks; no attention weights to drop";
  info.complexity = "time O(L m d), memory O(L m), m = features";
  info.params = {causal_param()};
  for (auto& p : projection_params(256)) info.params.push_back(p);
  info.params.push_back({"feature_eps", 1e-6, "added to each feature: phi = m^-1/2 (exp(u - h - s) + feature_eps)"});
  info.params.push_back({"eps", 1e-6, "clamp of the normaliser: O = N / max(D, eps)"});
  return make_attn_info<PerformerAttention>(info);
}

AttnInfo performer_relu_attention_info() {
  AttnInfo info;
  info.name = "performer-relu";
  info.summary =
      "Performer generalized attention with the ReLU kernel, phi = relu(.) + kernel_eps: what LRA's code runs as "
      "'performer' on Text, Retrieval, Image and Pathfinder (deterministic, features=0); no attention weights to drop";
  info.complexity = "time O(L m d), memory O(L m), m = features (dk when 0)";
  info.params = {causal_param()};
  for (auto& p : projection_params(0)) info.params.push_back(p);
  info.params.push_back({"kernel_eps", 1e-3, "added to each feature: phi = relu(.) + kernel_eps"});
  info.params.push_back({"eps", 1e-6, "clamp of the normaliser: O = N / max(D, eps)"});
  return make_attn_info<PerformerReluAttention>(info);
}

}  // namespace lra
