// Linformer (Wang et al. 2020): keys and values are projected along the length to k rows by a learned
// E (max_len x k, "proj"), shared by K and V and by every head of the layer as in LRA's code (one
// `lr_kernel` sliced to the example's first n rows); then exact softmax attention over the k projected
// keys. Hidden keys' rows count as zero before the projection, so they influence nothing; an example
// whose keys are all hidden has K' = V' = 0 and outputs 0. Each (example, head) is one task; the
// forward keeps LSE per query and K', V' per task, the backward recomputes the n x k scores.
//
// Per (b, h) of length n, tau = dk^-1/2, mu = key mask, E_n = diag(mu) E[:n] (n x k):
//   forward:  K' = E_n^T K, V' = E_n^T V (k x dk, k x dv),  S = tau Q K'^T (n x k),
//             LSE_i = log sum_r exp S_ir,  P = exp(S - LSE),  P' = P z / (1-p) (attention dropout),
//             O = P' V'
//   backward: dV' = P'^T dO,  dP = (dO V'^T) z / (1-p),  D_i = dO_i . O_i,  dS = P (dP - D),
//             dQ = tau dS K',  dK' = tau dS^T Q,  dK = E_n dK',  dV = E_n dV',
//             dE[:n] += diag(mu) (K dK'^T + V dV'^T), summed over examples and heads (per-thread partial
//             sums of E's shape, reduced after the tasks).
#include <omp.h>

#include <cmath>

#include "attn/linformer.h"
#include "attn/row_softmax.h"
#include "core/arena.h"
#include "core/rng.h"
#include "ops/parallel.h"

namespace lra {

LinformerOptions LinformerOptions::parse(const AttnConfig& c) {
  const auto& k = c.hp.at("k");
  LRA_CHECK(k.is_number_integer() && k.get<int64_t>() >= 1 && k.get<int64_t>() <= (1 << 20),
            "linformer: k (the projected length) must be a positive integer, got {}; LRA's code uses 16, the "
            "paper 128 or 256",
            k.dump());
  return {k.get<int>()};
}

std::vector<AttnParamSpec> LinformerOptions::param_specs(const AttnConfig& c) const {
  return {AttnParamSpec{"proj", {c.max_len, k}, Init::XavierUniform, static_cast<double>(c.max_len + k)}};
}

namespace {

template <class T>
class LinformerAttention final : public Attention<T> {
 public:
  explicit LinformerAttention(const AttnConfig& c) : c_(c), k_(LinformerOptions::parse(c).k) {}

  // LSE per (row, head), then K' and V' per (example, head).
  size_t saved_bytes(int B, int64_t rows) const override {
    return lse_bytes(rows) + sizeof(T) * static_cast<size_t>(B) * c_.heads * k_ * (c_.dk + c_.dv);
  }
  size_t scratch_bytes(int, int64_t) const override { return per_thread_bytes() * c_.threads; }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch, const AttnStep& step) override {
    check_sequence_lengths(seq, c_.max_len);
    T* lse = static_cast<T*>(saved);
    T* kv = kv_base(saved, seq);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      forward_one(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse, kv,
                  thread_scratch(scratch, omp_get_thread_num()), step);
    }
  }

  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved, void* scratch,
                const AttnStep& step) override {
    check_sequence_lengths(seq, c_.max_len);
    const T* lse = static_cast<const T*>(saved);
    const T* kv = kv_base(const_cast<void*>(saved), seq);
    int longest = 0;
    for (int b = 0; b < seq.B; ++b) longest = std::max(longest, seq.length(b));
    for (int t = 0; t < c_.threads; ++t)
      MapR<T>(thread_scratch(scratch, t).de, longest, k_, Eigen::OuterStride<>(k_)).setZero();
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse, kv,
                   thread_scratch(scratch, omp_get_thread_num()), step);
    }
    // dE += the threads' partial sums, row by row (each row of E on one thread).
    T* dE = this->param_grad(0);
#pragma omp parallel for schedule(static) num_threads(c_.threads)
    for (int i = 0; i < longest; ++i)
      for (int t = 0; t < c_.threads; ++t) {
        const T* part = thread_scratch(scratch, t).de + static_cast<int64_t>(i) * k_;
        for (int r = 0; r < k_; ++r) dE[static_cast<int64_t>(i) * k_ + r] += part[r];
      }
  }

 private:
  struct Work {
    T* e;            // max_len x k: E_n, the projection with hidden keys' rows zeroed
    T* s;            // max_len x k: scores, then probabilities
    T* dp;           // max_len x k: dP, then dS
    T* g;            // max_len x k: K dK'^T + V dV'^T
    T* de;           // max_len x k: this thread's partial sum of dE
    T* dkp;          // k x dk: dK'
    T* dvp;          // k x dv: dV'
    T* d;            // max_len: row maxima (forward), dO . O (backward)
    uint32_t* bits;  // k: dropout words of one row
  };

  size_t per_thread_bytes() const {
    const size_t L = static_cast<size_t>(c_.max_len), k = static_cast<size_t>(k_);
    const size_t n = 5 * L * k + k * c_.dk + k * c_.dv + L;
    return align_up(n * sizeof(T) + k * sizeof(uint32_t) + 9 * Arena::kAlign, Arena::kAlign);
  }

  Work thread_scratch(void* scratch, int thread) const {
    ScratchCarver sc(static_cast<char*>(scratch) + per_thread_bytes() * thread);
    const size_t L = static_cast<size_t>(c_.max_len), k = static_cast<size_t>(k_);
    Work w;
    w.e = sc.take<T>(L * k);
    w.s = sc.take<T>(L * k);
    w.dp = sc.take<T>(L * k);
    w.g = sc.take<T>(L * k);
    w.de = sc.take<T>(L * k);
    w.dkp = sc.take<T>(k * c_.dk);
    w.dvp = sc.take<T>(k * c_.dv);
    w.d = sc.take<T>(L);
    w.bits = sc.take<uint32_t>(k);
    return w;
  }

  size_t lse_bytes(int64_t rows) const { return align_up(sizeof(T) * rows * c_.heads, Arena::kAlign); }
  // Where K' and V' start, and those of (b, h): k x dk then k x dv.
  T* kv_base(void* saved, const SeqBatch& seq) const {
    return reinterpret_cast<T*>(static_cast<char*>(saved) + lse_bytes(seq.rows()));
  }
  int64_t kv_offset(int b, int h) const { return (static_cast<int64_t>(b) * c_.heads + h) * k_ * (c_.dk + c_.dv); }

  // E_n: the first n rows of E, hidden keys' rows zeroed (E itself when no key is masked).
  CMapR<T> projection(const SeqBatch& seq, int64_t r0, int n, const Work& w) const {
    const T* E = this->param(0);
    if (seq.key_mask == nullptr) return CMapR<T>(E, n, k_, Eigen::OuterStride<>(k_));
    const uint8_t* mu = seq.key_mask + r0;
    for (int j = 0; j < n; ++j) {
      T* row = w.e + static_cast<int64_t>(j) * k_;
      if (mu[j] != 0)
        std::copy(E + static_cast<int64_t>(j) * k_, E + static_cast<int64_t>(j + 1) * k_, row);
      else
        std::fill(row, row + k_, T(0));
    }
    return CMapR<T>(w.e, n, k_, Eigen::OuterStride<>(k_));
  }

  // S <- tau Q K'^T (n x k).
  void scores(const AttnIO<T>& io, int64_t r0, int n, int h, const T* kp, const Work& w) const {
    const T tau = T(1) / std::sqrt(static_cast<T>(c_.dk));
    CMapR<T> Q(io.q + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> Kp(kp, k_, c_.dk, Eigen::OuterStride<>(c_.dk));
    MapR<T> S(w.s, n, k_, Eigen::OuterStride<>(k_));
    S.noalias() = (Q * Kp.transpose()) * tau;
  }

  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* lse, T* kv, const Work& w,
                   const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b);
    if (n == 0) return;
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    const CMapR<T> En = projection(seq, r0, n, w);
    CMapR<T> K(io.k + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> V(io.v + r0 * io.ld_in + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_in));
    T* kp = kv + kv_offset(b, h);
    T* vp = kp + static_cast<int64_t>(k_) * c_.dk;
    MapR<T> Kp(kp, k_, c_.dk, Eigen::OuterStride<>(c_.dk));
    MapR<T> Vp(vp, k_, c_.dv, Eigen::OuterStride<>(c_.dv));
    Kp.noalias() = En.transpose() * K;
    Vp.noalias() = En.transpose() * V;
    scores(io, r0, n, h, kp, w);
    MapR<T> S(w.s, n, k_, Eigen::OuterStride<>(k_));
    for (int i = 0; i < n; ++i) {
      const T m = S.row(i).maxCoeff();
      S.row(i) = (S.row(i).array() - m).exp().matrix();
      const T l = S.row(i).sum();
      lse[(r0 + i) * c_.heads + h] = m + std::log(l);
      S.row(i) *= T(1) / l;
      if (drop.p > 0.0f) {
        T* row = w.s + static_cast<int64_t>(i) * k_;
        philox_fill(step.seed, step.stream, dropout_element(step.rows, r0 + i, h, c_.heads, k_), k_, w.bits);
        for (int r = 0; r < k_; ++r) row[r] *= dropout_factor(w.bits[r], drop.thr, drop.scale);
      }
    }
    MapR<T>(io.out + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out)).noalias() = S * Vp;
  }

  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h, const T* lse,
                    const T* kv, const Work& w, const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b);
    if (n == 0) return;
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    const T tau = T(1) / std::sqrt(static_cast<T>(c_.dk));
    const CMapR<T> En = projection(seq, r0, n, w);
    const T* kp = kv + kv_offset(b, h);
    CMapR<T> Kp(kp, k_, c_.dk, Eigen::OuterStride<>(c_.dk));
    CMapR<T> Vp(kp + static_cast<int64_t>(k_) * c_.dk, k_, c_.dv, Eigen::OuterStride<>(c_.dv));
    CMapR<T> Q(io.q + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> K(io.k + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> V(io.v + r0 * io.ld_in + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> dO(g.dout + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out));
    CMapR<T> O(io.out + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out));
    MapR<T> S(w.s, n, k_, Eigen::OuterStride<>(k_));
    MapR<T> dP(w.dp, n, k_, Eigen::OuterStride<>(k_));
    scores(io, r0, n, h, kp, w);
    for (int i = 0; i < n; ++i) S.row(i) = (S.row(i).array() - lse[(r0 + i) * c_.heads + h]).exp().matrix();
    dP.noalias() = dO * Vp.transpose();
    // dS = P (dP z s - D) into dP, and P' = P z s into S.
    for (int i = 0; i < n; ++i) {
      T* prow = w.s + static_cast<int64_t>(i) * k_;
      T* dprow = w.dp + static_cast<int64_t>(i) * k_;
      const T di = dO.row(i).dot(O.row(i));
      if (drop.p > 0.0f) {
        philox_fill(step.seed, step.stream, dropout_element(step.rows, r0 + i, h, c_.heads, k_), k_, w.bits);
        for (int r = 0; r < k_; ++r) {
          const T z = dropout_factor(w.bits[r], drop.thr, drop.scale);
          dprow[r] = softmax_dlogit(prow[r], dprow[r], z, di);
          prow[r] *= z;
        }
      } else {
        for (int r = 0; r < k_; ++r) dprow[r] = softmax_dlogit(prow[r], dprow[r], T(1), di);
      }
    }
    MapR<T> dKp(w.dkp, k_, c_.dk, Eigen::OuterStride<>(c_.dk));
    MapR<T> dVp(w.dvp, k_, c_.dv, Eigen::OuterStride<>(c_.dv));
    dVp.noalias() = S.transpose() * dO;
    dKp.noalias() = (dP.transpose() * Q) * tau;
    MapR<T>(g.dq + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in)).noalias() = (dP * Kp) * tau;
    MapR<T>(g.dk + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in)).noalias() = En * dKp;
    MapR<T>(g.dv + r0 * io.ld_in + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_in)).noalias() = En * dVp;
    MapR<T> dE(w.de, n, k_, Eigen::OuterStride<>(k_));
    if (seq.key_mask == nullptr) {
      dE.noalias() += K * dKp.transpose();
      dE.noalias() += V * dVp.transpose();
      return;
    }
    MapR<T> G(w.g, n, k_, Eigen::OuterStride<>(k_));
    G.noalias() = K * dKp.transpose();
    G.noalias() += V * dVp.transpose();
    const uint8_t* mu = seq.key_mask + r0;
    for (int j = 0; j < n; ++j)
      if (mu[j] != 0) dE.row(j) += G.row(j);
  }

  AttnConfig c_;
  int k_ = 0;
};

}  // namespace

AttnInfo linformer_attention_info() {
  AttnInfo info;
  info.name = "linformer";
  info.summary =
      "Linformer (Wang et al. 2020): K and V projected along the length to k rows by one learned E (max_len x k, "
      "layers.<l>.attn.proj) shared by K, V and all heads as in LRA's code, then exact softmax; hidden keys are "
      "zeroed before the projection (LRA's code projects padding too)";
  info.complexity = "time O(L k d), memory O(L) saved per head (LSE; K', V' are k x d per example and head)";
  info.uses_attention_dropout = true;
  info.no_causal = "its length projection mixes future positions into every projected key";
  info.params = {{"k", 16, "projected length: rows of K' and V' (LRA's code default 16; the paper uses 128 or 256)"}};
  return make_attn_info<LinformerAttention, LinformerOptions>(info);
}

}  // namespace lra
