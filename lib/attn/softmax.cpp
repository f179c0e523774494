// Exact softmax attention, tiled over query blocks so no B x H x L x L tensor ever exists: each
// (example, head) is one task; a task walks blocks of kBlock queries, holding one kBlock x L score
// tile, and keeps only the log-sum-exp per query for the backward (which recomputes the scores).
// Causal mode (causal=true) hides keys j > i, and a query block stops at its last query's column.
// store_probs=true is the standard implementation instead (what LRA's code and PyTorch users run): P is
// kept from the forward for the backward, B x H x L x L values, so memory grows as L^2.
//
// Per (b, h), tau = dk^-1/2, mu = key mask:
//   forward:  S = tau Q K^T (-inf where mu = 0, or j > i when causal),  LSE_i = log sum_j exp S_ij,
//             P = exp(S - LSE)
//             P' = P z / (1-p) (attention dropout, z regenerated from the counter RNG),  O = P' V
//   backward: dV = P'^T dO,  dP = (dO V^T) z / (1-p),  D_i = dO_i . O_i,  dS = P (dP - D)
//             dQ = tau dS K,  dK = tau dS^T Q
// An example whose keys are all masked outputs 0 and gets LSE = +inf (so P = 0 in the backward).
#include <omp.h>

#include <cmath>
#include <limits>

#include "attn/softmax.h"

#include "attn/row_softmax.h"
#include "core/arena.h"
#include "core/rng.h"
#include "ops/parallel.h"

namespace lra {

namespace {

constexpr int kBlock = 64;

template <class T>
class SoftmaxAttention final : public Attention<T> {
 public:
  explicit SoftmaxAttention(const AttnConfig& c) : c_(c), o_(SoftmaxOptions::parse(c)) {}

  // LSE per (row, head), then with store_probs each example's P: L rows of stride max_len per head.
  size_t saved_bytes(int, int64_t rows) const override {
    const size_t lse = align_up(sizeof(T) * rows * c_.heads, Arena::kAlign);
    return o_.store_probs ? lse + sizeof(T) * rows * c_.heads * c_.max_len : lse;
  }
  size_t scratch_bytes(int, int64_t) const override { return per_thread_bytes() * c_.threads; }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch,
               const AttnStep& step) override {
    T* lse = static_cast<T*>(saved);
    T* probs = probs_base(saved, seq);
    check_sequence_lengths(seq, c_.max_len);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      forward_one(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse, probs,
                  thread_scratch(scratch), step);
    }
  }

  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved,
                void* scratch, const AttnStep& step) override {
    const T* lse = static_cast<const T*>(saved);
    const T* probs = probs_base(const_cast<void*>(saved), seq);
    check_sequence_lengths(seq, c_.max_len);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse, probs,
                   thread_scratch(scratch), step);
    }
  }

 private:
  struct Work {
    T* q;   // kBlock x dk: the scaled query block
    T* s;   // kBlock x L: scores, then probabilities
    T* dp;  // kBlock x L: dP, then dS
    T* dk;  // L x dk
    T* dv;  // L x dv
    T* d;   // kBlock: row maxima (forward), dO . O (backward)
    uint32_t* bits;  // L: dropout words of one row
  };

  size_t per_thread_bytes() const {
    const size_t L = static_cast<size_t>(c_.max_len);
    const size_t n = kBlock * c_.dk + 2 * kBlock * L + L * c_.dk + L * c_.dv + kBlock;
    return align_up(n * sizeof(T) + L * sizeof(uint32_t) + 7 * Arena::kAlign, Arena::kAlign);
  }

  Work thread_scratch(void* scratch) const {
    ScratchCarver sc(static_cast<char*>(scratch) + per_thread_bytes() * omp_get_thread_num());
    const size_t L = static_cast<size_t>(c_.max_len);
    Work w;
    w.q = sc.take<T>(kBlock * c_.dk);
    w.s = sc.take<T>(kBlock * L);
    w.dp = sc.take<T>(kBlock * L);
    w.dk = sc.take<T>(L * c_.dk);
    w.dv = sc.take<T>(L * c_.dv);
    w.d = sc.take<T>(kBlock);
    w.bits = sc.take<uint32_t>(L);
    return w;
  }

  // Where the stored probabilities start (nullptr without store_probs), and those of (b, h).
  T* probs_base(void* saved, const SeqBatch& seq) const {
    if (!o_.store_probs) return nullptr;
    return reinterpret_cast<T*>(static_cast<char*>(saved) +
                                align_up(sizeof(T) * seq.rows() * c_.heads, Arena::kAlign));
  }
  int64_t probs_offset(const SeqBatch& seq, int b, int h) const {
    return (static_cast<int64_t>(seq.offsets[b]) * c_.heads + static_cast<int64_t>(h) * seq.length(b)) * c_.max_len;
  }

  // Keys a query block [i0, i0 + br) can see: all L, or the first i0 + br when causal.
  int visible_keys(int L, int i0, int br) const { return o_.causal ? std::min(L, i0 + br) : L; }

  // Masked keys (and, when causal, future keys) get exactly zero probability (a vectorised exp of
  // -inf may return a denormal).
  void zero_hidden(const SeqBatch& seq, int64_t r0, int i0, MapR<T>& P) const {
    const int br = static_cast<int>(P.rows()), nk = static_cast<int>(P.cols());
    if (seq.key_mask != nullptr) {
      const uint8_t* mu = seq.key_mask + r0;
      for (int j = 0; j < nk; ++j)
        if (mu[j] == 0) P.col(j).setZero();
    }
    if (o_.causal)
      for (int i = 0; i < br; ++i)
        if (i0 + i + 1 < nk) P.row(i).tail(nk - (i0 + i + 1)).setZero();
  }

  // S <- tau Q_blk K^T over the nk visible keys, hidden keys at -inf.
  void scores(const SeqBatch& seq, const AttnIO<T>& io, int64_t r0, int nk, int h, int i0, int br,
              const Work& w) const {
    const T tau = T(1) / std::sqrt(static_cast<T>(c_.dk));
    CMapR<T> Q(io.q + (r0 + i0) * io.ld_in + h * c_.dk, br, c_.dk, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> K(io.k + r0 * io.ld_in + h * c_.dk, nk, c_.dk, Eigen::OuterStride<>(io.ld_in));
    MapR<T> Qs(w.q, br, c_.dk, Eigen::OuterStride<>(c_.dk));
    MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
    Qs = Q * tau;
    S.noalias() = Qs * K.transpose();
    const T ninf = -std::numeric_limits<T>::infinity();
    if (seq.key_mask != nullptr) {
      const uint8_t* mu = seq.key_mask + r0;
      for (int j = 0; j < nk; ++j)
        if (mu[j] == 0) S.col(j).setConstant(ninf);
    }
    if (o_.causal)
      for (int i = 0; i < br; ++i)
        if (i0 + i + 1 < nk) S.row(i).tail(nk - (i0 + i + 1)).setConstant(ninf);
  }

  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* lse, T* probs, const Work& w,
                   const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int L = seq.length(b);
    if (L == 0) return;
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    for (int i0 = 0; i0 < L; i0 += kBlock) {
      const int br = std::min(kBlock, L - i0), nk = visible_keys(L, i0, br);
      scores(seq, io, r0, nk, h, i0, br, w);
      CMapR<T> V(io.v + r0 * io.ld_in + h * c_.dv, nk, c_.dv, Eigen::OuterStride<>(io.ld_in));
      MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
      MapR<T> O(io.out + (r0 + i0) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
      // Row maxima; a row whose keys are all masked keeps m = -inf and is zeroed below.
      for (int i = 0; i < br; ++i) {
        const T m = S.row(i).maxCoeff();
        w.d[i] = m;
        if (m != -std::numeric_limits<T>::infinity()) S.row(i) = (S.row(i).array() - m).exp().matrix();
      }
      zero_hidden(seq, r0, i0, S);
      for (int i = 0; i < br; ++i) {
        const int64_t r = r0 + i0 + i;
        const T m = w.d[i];
        T* row = w.s + static_cast<int64_t>(i) * nk;
        if (m == -std::numeric_limits<T>::infinity()) {
          S.row(i).setZero();
          lse[r * c_.heads + h] = std::numeric_limits<T>::infinity();
        } else {
          const T l = S.row(i).sum();
          lse[r * c_.heads + h] = m + std::log(l);
          S.row(i) *= T(1) / l;
        }
        if (o_.store_probs) std::copy(row, row + nk, probs + probs_offset(seq, b, h) + static_cast<int64_t>(i0 + i) * c_.max_len);
        if (m != -std::numeric_limits<T>::infinity() && drop.p > 0.0f) {
          philox_fill(step.seed, step.stream, dropout_element(step.rows, r, h, c_.heads, seq.L_pad), nk, w.bits);
          for (int j = 0; j < nk; ++j) row[j] = dropout_keeps(w.bits[j], drop.thr) ? row[j] * drop.scale : T(0);
        }
      }
      O.noalias() = S * V;
    }
  }

  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h,
                    const T* lse, const T* probs, const Work& w, const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int L = seq.length(b);
    if (L == 0) return;
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    const T tau = T(1) / std::sqrt(static_cast<T>(c_.dk));
    CMapR<T> K(io.k + r0 * io.ld_in + h * c_.dk, L, c_.dk, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> V(io.v + r0 * io.ld_in + h * c_.dv, L, c_.dv, Eigen::OuterStride<>(io.ld_in));
    MapR<T> dK(w.dk, L, c_.dk, Eigen::OuterStride<>(c_.dk));
    MapR<T> dV(w.dv, L, c_.dv, Eigen::OuterStride<>(c_.dv));
    dK.setZero();
    dV.setZero();
    for (int i0 = 0; i0 < L; i0 += kBlock) {
      const int br = std::min(kBlock, L - i0), nk = visible_keys(L, i0, br);
      MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
      MapR<T> dP(w.dp, br, nk, Eigen::OuterStride<>(nk));
      MapR<T> Qs(w.q, br, c_.dk, Eigen::OuterStride<>(c_.dk));
      CMapR<T> dO(g.dout + (r0 + i0) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
      CMapR<T> O(io.out + (r0 + i0) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
      if (o_.store_probs) {
        S = CMapR<T>(probs + probs_offset(seq, b, h) + static_cast<int64_t>(i0) * c_.max_len, br, nk,
                     Eigen::OuterStride<>(c_.max_len));
        Qs = CMapR<T>(io.q + (r0 + i0) * io.ld_in + h * c_.dk, br, c_.dk, Eigen::OuterStride<>(io.ld_in)) * tau;
      } else {
        scores(seq, io, r0, nk, h, i0, br, w);
        for (int i = 0; i < br; ++i)
          S.row(i) = (S.row(i).array() - lse[(r0 + i0 + i) * c_.heads + h]).exp().matrix();
        zero_hidden(seq, r0, i0, S);
      }
      for (int i = 0; i < br; ++i) w.d[i] = dO.row(i).dot(O.row(i));
      dP.noalias() = dO * V.topRows(nk).transpose();
      // dS = P (dP z s - D) into dP, and P' = P z s into S (P is not needed after dS).
      for (int i = 0; i < br; ++i) {
        T* prow = w.s + static_cast<int64_t>(i) * nk;
        T* dprow = w.dp + static_cast<int64_t>(i) * nk;
        const T di = w.d[i];
        if (drop.p > 0.0f) {
          philox_fill(step.seed, step.stream, dropout_element(step.rows, r0 + i0 + i, h, c_.heads, seq.L_pad), nk, w.bits);
          for (int j = 0; j < nk; ++j) {
            const T z = dropout_keeps(w.bits[j], drop.thr) ? drop.scale : T(0);
            dprow[j] = prow[j] * (dprow[j] * z - di);
            prow[j] *= z;
          }
        } else {
          for (int j = 0; j < nk; ++j) dprow[j] = prow[j] * (dprow[j] - di);
        }
      }
      dV.topRows(nk).noalias() += S.transpose() * dO;
      MapR<T> dQ(g.dq + (r0 + i0) * io.ld_in + h * c_.dk, br, c_.dk, Eigen::OuterStride<>(io.ld_in));
      dQ.noalias() = (dP * K.topRows(nk)) * tau;
      dK.topRows(nk).noalias() += dP.transpose() * Qs;
    }
    MapR<T>(g.dk + r0 * io.ld_in + h * c_.dk, L, c_.dk, Eigen::OuterStride<>(io.ld_in)) = dK;
    MapR<T>(g.dv + r0 * io.ld_in + h * c_.dv, L, c_.dv, Eigen::OuterStride<>(io.ld_in)) = dV;
  }

  AttnConfig c_;
  SoftmaxOptions o_;
};

}  // namespace

SoftmaxOptions SoftmaxOptions::parse(const AttnConfig& c) {
  return {c.hp.at("causal").get<bool>(), c.hp.at("store_probs").get<bool>()};
}

AttnInfo softmax_attention_info() {
  AttnInfo info;
  info.name = "softmax";
  info.summary = "exact scaled dot-product attention (Vaswani et al. 2017), tiled so no L x L tensor is stored";
  info.complexity = "time O(L^2 d), memory O(L) saved per head (scores recomputed in the backward)";
  info.uses_attention_dropout = true;
  info.params = {causal_param(),
                 {"store_probs", false,
                  "keep P (B x H x L x L) for the backward instead of recomputing it: the standard implementation "
                  "LRA's efficiency table measured, memory O(L^2)"}};
  return make_attn_info<SoftmaxAttention>(info);
}

}  // namespace lra
