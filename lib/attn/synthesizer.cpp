// Synthesizer (Tay et al. 2020): attention logits synthesised from learned weights instead of (or, with
// dot_product=true as LRA's encoder runs it, added to) the query-key scores. Modes, per head h:
//   random:     Syn = R[h, :n, :n]                        R: heads x max_len x max_len ("random")
//   factorized: Syn = A[h, :n] B[h, :n]^T                 A, B: heads x max_len x k ("random_a", "random_b")
//   dense:      Syn_i = W2[h, :n] relu(W1[h] q_i + b1[h]) + b2[h, :n]
//               W1: heads x dk x dk, b1: heads x dk, W2: heads x max_len x dk, b2: heads x max_len; q_i is the
//               head's query row (the paper and LRA feed the layer input x; variants here see only Q, K, V).
// Tiled like softmax.cpp: each (example, head) walks blocks of kBlock queries with one kBlock x n logit
// tile and keeps only the log-sum-exp per query; the backward recomputes the logits.
//
// Per (b, h), tau = dk^-1/2, mu = key mask:
//   forward:  S = Syn (+ tau Q K^T with dot_product) (-inf where mu = 0, or j > i when causal),
//             LSE_i = log sum_j exp S_ij,  P = exp(S - LSE),  P' = P z / (1-p) (attention dropout),  O = P' V
//   backward: dV = P'^T dO,  dP = (dO V^T) z / (1-p),  D_i = dO_i . O_i,  dS = P (dP - D),
//             with dot_product: dQ = tau dS K,  dK = tau dS^T Q (otherwise dK = 0 and dQ only from dense)
//             random:     dR[h, :n, :n] += dS
//             factorized: dA[h, :n] += dS B[h, :n],  dB[h, :n] += dS^T A[h, :n]
//             dense:      H = Q W1[h]^T + b1[h],  dW2[h, :n] += dS^T relu(H),  db2[h, :n] += colsum(dS),
//                         dH = (dS W2[h, :n]) [H > 0],  dW1[h] += dH^T Q,  db1[h] += colsum(dH),  dQ += dH W1[h]
// The learned weights are shared by every example, so their gradients must not race: dR is summed by a
// second pass over (head, query block) tasks, which own disjoint rows of dR and recompute dS; the
// factorized and dense gradients (O(max_len) per head) are per-thread partial sums, reduced at the end.
// An example whose keys are all masked outputs 0 and gets LSE = +inf (so P = 0 in the backward).
#include <omp.h>

#include <cmath>
#include <limits>

#include "attn/synthesizer.h"
#include "attn/row_softmax.h"
#include "core/arena.h"
#include "core/rng.h"
#include "ops/parallel.h"

namespace lra {

SynthesizerOptions SynthesizerOptions::parse(const AttnConfig& c) {
  SynthesizerOptions o;
  const std::string m = c.hp.at("mode").get<std::string>();
  if (m == "random")
    o.mode = SynthesizerMode::Random;
  else if (m == "factorized")
    o.mode = SynthesizerMode::Factorized;
  else if (m == "dense")
    o.mode = SynthesizerMode::Dense;
  else
    LRA_FAIL("synthesizer: mode must be random, factorized or dense, got '{}'", m);
  o.causal = c.hp.at("causal").get<bool>();
  o.dot_product = c.hp.at("dot_product").get<bool>();
  const auto& k = c.hp.at("k");
  LRA_CHECK(k.is_number_integer() && k.get<int64_t>() >= 1 && k.get<int64_t>() <= (1 << 20),
            "synthesizer: k (the rank of the factorized mode) must be a positive integer, got {}; LRA uses 32",
            k.dump());
  o.k = k.get<int>();
  return o;
}

std::vector<AttnParamSpec> SynthesizerOptions::param_specs(const AttnConfig& c) const {
  const int H = c.heads, L = c.max_len, d = c.dk;
  switch (mode) {
    case SynthesizerMode::Random:
      return {{"random", {H, L, L}, Init::XavierUniform, 2.0 * H * L}};
    case SynthesizerMode::Factorized:
      return {{"random_a", {H, L, k}, Init::XavierUniform, static_cast<double>(H) * (L + k)},
              {"random_b", {H, L, k}, Init::XavierUniform, static_cast<double>(H) * (L + k)}};
    case SynthesizerMode::Dense:
      break;
  }
  return {{"w1", {H, d, d}, Init::XavierUniform, 2.0 * d},
          {"b1", {H, d}, Init::Zeros, 0.0},
          {"w2", {H, L, d}, Init::XavierUniform, static_cast<double>(L + d)},
          {"b2", {H, L}, Init::Zeros, 0.0}};
}

namespace {

constexpr int kBlock = 64;

using Mode = SynthesizerMode;

template <class T>
class SynthesizerAttention final : public Attention<T> {
 public:
  explicit SynthesizerAttention(const AttnConfig& c) : SynthesizerAttention(c, SynthesizerOptions::parse(c)) {}
  SynthesizerAttention(const AttnConfig& c, const SynthesizerOptions& o)
      : c_(c), o_(o) {
    for (const auto& s : o_.param_specs(c_)) param_sizes_.push_back(s.size());
    if (o_.mode != Mode::Random)
      for (int64_t n : param_sizes_) partial_ += n;
  }


  size_t saved_bytes(int, int64_t rows) const override { return sizeof(T) * rows * c_.heads; }
  size_t scratch_bytes(int, int64_t) const override { return per_thread_bytes() * c_.threads; }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch, const AttnStep& step) override {
    check_sequence_lengths(seq, c_.max_len);
    T* lse = static_cast<T*>(saved);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      forward_one(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse,
                  thread_scratch(scratch, omp_get_thread_num()), step);
    }
  }

  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved, void* scratch,
                const AttnStep& step) override {
    check_sequence_lengths(seq, c_.max_len);
    const T* lse = static_cast<const T*>(saved);
    // Thread t's partial sums start at part0 + t * stride.
    T* part0 = thread_scratch(scratch, 0).part;
    const int64_t stride = static_cast<int64_t>(per_thread_bytes() / sizeof(T));
    for (int t = 0; t < c_.threads; ++t) std::fill(part0 + t * stride, part0 + t * stride + partial_, T(0));
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse,
                   thread_scratch(scratch, omp_get_thread_num()), step);
    }
    if (o_.mode == Mode::Random) {
      int longest = 0;
      for (int b = 0; b < seq.B; ++b) longest = std::max(longest, seq.length(b));
      const int blocks = (longest + kBlock - 1) / kBlock;
      const int64_t row_tasks = static_cast<int64_t>(c_.heads) * blocks;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
      for (int64_t t = 0; t < row_tasks; ++t) {
        random_grad_rows(seq, io, g, static_cast<int>(t / blocks), static_cast<int>(t % blocks) * kBlock, lse,
                         thread_scratch(scratch, omp_get_thread_num()), step);
      }
      return;
    }
    // The weights' gradients += the threads' partial sums (layout: the param_specs, one after another).
    int64_t at = 0;
    for (size_t p = 0; p < param_sizes_.size(); ++p) {
      T* grad = this->param_grad(p);
      const int64_t n = param_sizes_[p];
#pragma omp parallel for schedule(static) num_threads(c_.threads)
      for (int64_t e = 0; e < n; ++e)
        for (int t = 0; t < c_.threads; ++t) grad[e] += part0[t * stride + at + e];
      at += n;
    }
  }

 private:
  struct Work {
    T* q;            // kBlock x dk: the scaled query block
    T* s;            // kBlock x L: logits, then probabilities
    T* dp;           // kBlock x L: dP, then dS
    T* h;            // kBlock x dk: dense pre-activation H
    T* hr;           // kBlock x dk: relu(H), then dH
    T* dk;           // L x dk
    T* dv;           // L x dv
    T* d;            // kBlock: row maxima (forward), dO . O (backward)
    T* part;         // partial_: this thread's sums of the factorized or dense gradients
    uint32_t* bits;  // L: dropout words of one row
  };

  size_t per_thread_bytes() const {
    const size_t L = static_cast<size_t>(c_.max_len), d = static_cast<size_t>(c_.dk);
    const size_t n = 3 * kBlock * d + 2 * kBlock * L + L * d + L * c_.dv + kBlock + partial_;
    return align_up(n * sizeof(T) + L * sizeof(uint32_t) + 11 * Arena::kAlign, Arena::kAlign);
  }

  Work thread_scratch(void* scratch, int thread) const {
    ScratchCarver sc(static_cast<char*>(scratch) + per_thread_bytes() * thread);
    const size_t L = static_cast<size_t>(c_.max_len), d = static_cast<size_t>(c_.dk);
    Work w;
    w.q = sc.take<T>(kBlock * d);
    w.s = sc.take<T>(kBlock * L);
    w.dp = sc.take<T>(kBlock * L);
    w.h = sc.take<T>(kBlock * d);
    w.hr = sc.take<T>(kBlock * d);
    w.dk = sc.take<T>(L * d);
    w.dv = sc.take<T>(L * c_.dv);
    w.d = sc.take<T>(kBlock);
    w.part = sc.take<T>(static_cast<size_t>(partial_));
    w.bits = sc.take<uint32_t>(L);
    return w;
  }

  int visible_keys(int n, int i0, int br) const { return o_.causal ? std::min(n, i0 + br) : n; }

  // S <- the logits of queries [i0, i0 + br) over the nk visible keys, hidden keys at -inf. Dense mode
  // leaves H and relu(H) of the block in w.h and w.hr.
  void logits(const SeqBatch& seq, const AttnIO<T>& io, int64_t r0, int nk, int h, int i0, int br,
              const Work& w) const {
    const int L = c_.max_len, d = c_.dk;
    MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
    CMapR<T> Q(io.q + (r0 + i0) * io.ld_in + h * d, br, d, Eigen::OuterStride<>(io.ld_in));
    if (o_.dot_product) {
      const T tau = T(1) / std::sqrt(static_cast<T>(d));
      CMapR<T> K(io.k + r0 * io.ld_in + h * d, nk, d, Eigen::OuterStride<>(io.ld_in));
      MapR<T> Qs(w.q, br, d, Eigen::OuterStride<>(d));
      Qs = Q * tau;
      S.noalias() = Qs * K.transpose();
    } else {
      S.setZero();
    }
    switch (o_.mode) {
      case Mode::Random:
        S += CMapR<T>(this->param(0) + (static_cast<int64_t>(h) * L + i0) * L, br, nk, Eigen::OuterStride<>(L));
        break;
      case Mode::Factorized: {
        CMapR<T> A(this->param(0) + (static_cast<int64_t>(h) * L + i0) * o_.k, br, o_.k, Eigen::OuterStride<>(o_.k));
        CMapR<T> B(this->param(1) + static_cast<int64_t>(h) * L * o_.k, nk, o_.k, Eigen::OuterStride<>(o_.k));
        S.noalias() += A * B.transpose();
        break;
      }
      case Mode::Dense: {
        CMapR<T> W1(this->param(0) + static_cast<int64_t>(h) * d * d, d, d, Eigen::OuterStride<>(d));
        Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>> b1(this->param(1) + static_cast<int64_t>(h) * d, d);
        CMapR<T> W2(this->param(2) + static_cast<int64_t>(h) * L * d, nk, d, Eigen::OuterStride<>(d));
        Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>> b2(this->param(3) + static_cast<int64_t>(h) * L, nk);
        MapR<T> Hp(w.h, br, d, Eigen::OuterStride<>(d));
        MapR<T> Hr(w.hr, br, d, Eigen::OuterStride<>(d));
        Hp.noalias() = Q * W1.transpose();
        Hp.rowwise() += b1;
        Hr = Hp.cwiseMax(T(0));
        S.noalias() += Hr * W2.transpose();
        S.rowwise() += b2;
        break;
      }
    }
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

  // Masked keys (and, causal, future keys) get exactly zero probability.
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

  // P of the block from the saved LSE, then dS = P (dP z s - D) into w.dp and P' = P z s into w.s.
  void probs_and_dlogits(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int64_t r0, int h, int i0,
                         int br, int nk, const T* lse, const Work& w, const AttnStep& step) const {
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
    MapR<T> dP(w.dp, br, nk, Eigen::OuterStride<>(nk));
    CMapR<T> V(io.v + r0 * io.ld_in + h * c_.dv, nk, c_.dv, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> dO(g.dout + (r0 + i0) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
    CMapR<T> O(io.out + (r0 + i0) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
    for (int i = 0; i < br; ++i) S.row(i) = (S.row(i).array() - lse[(r0 + i0 + i) * c_.heads + h]).exp().matrix();
    zero_hidden(seq, r0, i0, S);
    dP.noalias() = dO * V.transpose();
    for (int i = 0; i < br; ++i) {
      T* prow = w.s + static_cast<int64_t>(i) * nk;
      T* dprow = w.dp + static_cast<int64_t>(i) * nk;
      const T di = dO.row(i).dot(O.row(i));
      if (drop.p > 0.0f) {
        philox_fill(step.seed, step.stream, dropout_element(step.rows, r0 + i0 + i, h, c_.heads, seq.L_pad), nk, w.bits);
        for (int j = 0; j < nk; ++j) {
          const T z = dropout_factor(w.bits[j], drop.thr, drop.scale);
          dprow[j] = softmax_dlogit(prow[j], dprow[j], z, di);
          prow[j] *= z;
        }
      } else {
        for (int j = 0; j < nk; ++j) dprow[j] = softmax_dlogit(prow[j], dprow[j], T(1), di);
      }
    }
  }

  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* lse, const Work& w,
                   const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b);
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    const T ninf = -std::numeric_limits<T>::infinity();
    for (int i0 = 0; i0 < n; i0 += kBlock) {
      const int br = std::min(kBlock, n - i0), nk = visible_keys(n, i0, br);
      logits(seq, io, r0, nk, h, i0, br, w);
      MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
      CMapR<T> V(io.v + r0 * io.ld_in + h * c_.dv, nk, c_.dv, Eigen::OuterStride<>(io.ld_in));
      MapR<T> O(io.out + (r0 + i0) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
      for (int i = 0; i < br; ++i) {
        const T m = S.row(i).maxCoeff();
        w.d[i] = m;
        if (m != ninf) S.row(i) = (S.row(i).array() - m).exp().matrix();
      }
      zero_hidden(seq, r0, i0, S);
      for (int i = 0; i < br; ++i) {
        const int64_t r = r0 + i0 + i;
        const T m = w.d[i];
        T* row = w.s + static_cast<int64_t>(i) * nk;
        if (m == ninf) {
          S.row(i).setZero();
          lse[r * c_.heads + h] = std::numeric_limits<T>::infinity();
          continue;
        }
        const T l = S.row(i).sum();
        lse[r * c_.heads + h] = m + std::log(l);
        S.row(i) *= T(1) / l;
        if (drop.p > 0.0f) {
          philox_fill(step.seed, step.stream, dropout_element(step.rows, r, h, c_.heads, seq.L_pad), nk, w.bits);
          for (int j = 0; j < nk; ++j) row[j] *= dropout_factor(w.bits[j], drop.thr, drop.scale);
        }
      }
      O.noalias() = S * V;
    }
  }

  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h, const T* lse,
                    const Work& w, const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b);
    if (n == 0) return;
    const int L = c_.max_len, d = c_.dk;
    const T tau = T(1) / std::sqrt(static_cast<T>(d));
    CMapR<T> K(io.k + r0 * io.ld_in + h * d, n, d, Eigen::OuterStride<>(io.ld_in));
    MapR<T> dK(w.dk, n, d, Eigen::OuterStride<>(d));
    MapR<T> dV(w.dv, n, c_.dv, Eigen::OuterStride<>(c_.dv));
    dK.setZero();
    dV.setZero();
    for (int i0 = 0; i0 < n; i0 += kBlock) {
      const int br = std::min(kBlock, n - i0), nk = visible_keys(n, i0, br);
      logits(seq, io, r0, nk, h, i0, br, w);
      probs_and_dlogits(seq, io, g, r0, h, i0, br, nk, lse, w, step);
      MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
      MapR<T> dS(w.dp, br, nk, Eigen::OuterStride<>(nk));
      CMapR<T> dO(g.dout + (r0 + i0) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
      dV.topRows(nk).noalias() += S.transpose() * dO;
      MapR<T> dQ(g.dq + (r0 + i0) * io.ld_in + h * d, br, d, Eigen::OuterStride<>(io.ld_in));
      if (o_.dot_product) {
        dQ.noalias() = (dS * K.topRows(nk)) * tau;
        dK.topRows(nk).noalias() += dS.transpose() * MapR<T>(w.q, br, d, Eigen::OuterStride<>(d));
      } else {
        dQ.setZero();
      }
      if (o_.mode == Mode::Factorized) {
        MapR<T> dA(w.part + (static_cast<int64_t>(h) * L + i0) * o_.k, br, o_.k, Eigen::OuterStride<>(o_.k));
        MapR<T> dB(w.part + (static_cast<int64_t>(c_.heads) * L + static_cast<int64_t>(h) * L) * o_.k, nk, o_.k,
                   Eigen::OuterStride<>(o_.k));
        CMapR<T> A(this->param(0) + (static_cast<int64_t>(h) * L + i0) * o_.k, br, o_.k, Eigen::OuterStride<>(o_.k));
        CMapR<T> B(this->param(1) + static_cast<int64_t>(h) * L * o_.k, nk, o_.k, Eigen::OuterStride<>(o_.k));
        dA.noalias() += dS * B;
        dB.noalias() += dS.transpose() * A;
      } else if (o_.mode == Mode::Dense) {
        dense_grads(io, r0, h, i0, br, nk, w, dQ);
      }
    }
    MapR<T>(g.dk + r0 * io.ld_in + h * d, n, d, Eigen::OuterStride<>(io.ld_in)) = dK;
    MapR<T>(g.dv + r0 * io.ld_in + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_in)) = dV;
  }

  // The dense synthesiser's part of the block's backward, dS in w.dp and H, relu(H) in w.h, w.hr:
  // partial sums of dW1, db1, dW2, db2 (laid out as param_specs) and dQ += dH W1.
  void dense_grads(const AttnIO<T>& io, int64_t r0, int h, int i0, int br, int nk, const Work& w, MapR<T>& dQ) const {
    const int L = c_.max_len, d = c_.dk, H = c_.heads;
    MapR<T> dS(w.dp, br, nk, Eigen::OuterStride<>(nk));
    MapR<T> Hp(w.h, br, d, Eigen::OuterStride<>(d));
    MapR<T> Hr(w.hr, br, d, Eigen::OuterStride<>(d));
    CMapR<T> Q(io.q + (r0 + i0) * io.ld_in + h * d, br, d, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> W1(this->param(0) + static_cast<int64_t>(h) * d * d, d, d, Eigen::OuterStride<>(d));
    CMapR<T> W2(this->param(2) + static_cast<int64_t>(h) * L * d, nk, d, Eigen::OuterStride<>(d));
    T* dw1 = w.part;
    T* db1 = dw1 + static_cast<int64_t>(H) * d * d;
    T* dw2 = db1 + static_cast<int64_t>(H) * d;
    T* db2 = dw2 + static_cast<int64_t>(H) * L * d;
    MapR<T> dW2(dw2 + static_cast<int64_t>(h) * L * d, nk, d, Eigen::OuterStride<>(d));
    dW2.noalias() += dS.transpose() * Hr;
    Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(db2 + static_cast<int64_t>(h) * L, nk) += dS.colwise().sum();
    // dH = (dS W2) [H > 0], into w.hr.
    Hr.noalias() = dS * W2;
    Hr = (Hp.array() > T(0)).select(Hr.array(), T(0)).matrix();
    MapR<T>(dw1 + static_cast<int64_t>(h) * d * d, d, d, Eigen::OuterStride<>(d)).noalias() += Hr.transpose() * Q;
    Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(db1 + static_cast<int64_t>(h) * d, d) += Hr.colwise().sum();
    dQ.noalias() += Hr * W1;
  }

  // dR[h, i0 .. i0 + kBlock) += dS of those query rows, summed over the examples that have them. One
  // task owns those rows of dR, so tasks never write the same element.
  void random_grad_rows(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int h, int i0, const T* lse,
                        const Work& w, const AttnStep& step) const {
    const int L = c_.max_len;
    for (int b = 0; b < seq.B; ++b) {
      const int n = seq.length(b);
      if (n <= i0) continue;
      const int64_t r0 = seq.offsets[b];
      const int br = std::min(kBlock, n - i0), nk = visible_keys(n, i0, br);
      logits(seq, io, r0, nk, h, i0, br, w);
      probs_and_dlogits(seq, io, g, r0, h, i0, br, nk, lse, w, step);
      MapR<T>(this->param_grad(0) + (static_cast<int64_t>(h) * L + i0) * L, br, nk, Eigen::OuterStride<>(L)) +=
          MapR<T>(w.dp, br, nk, Eigen::OuterStride<>(nk));
    }
  }

  AttnConfig c_;
  SynthesizerOptions o_;
  std::vector<int64_t> param_sizes_;  // elements of each learned weight
  int64_t partial_ = 0;               // elements of a thread's partial gradient sums: every weight except random's R
};

}  // namespace

AttnInfo synthesizer_attention_info() {
  AttnInfo info;
  info.name = "synthesizer";
  info.summary =
      "Synthesizer (Tay et al. 2020): learned synthetic attention logits per head (random R, factorized A B^T, or "
      "dense from each query row), added to the scaled dot product as LRA's encoder does; tiled, LSE saved";
  info.complexity =
      "time O(L^2 d), memory O(L) saved per head; the weights are heads x max_len^2 (random) or heads x max_len x "
      "k or dk (factorized, dense)";
  info.uses_attention_dropout = true;
  info.params = {
      causal_param(),
      {"mode", "random",
       "random (learned logits R, heads x max_len^2; LRA's encoder default), factorized (R = A B^T, rank k), or "
       "dense (logits_i = W2 relu(W1 q_i + b1) + b2 from the head's query row q_i; the paper and LRA use the layer "
       "input x, which attention variants here do not see, and LRA shares W2 across heads without biases)"},
      {"dot_product", true,
       "add the scaled dot product tau Q K^T to the synthetic logits before the softmax (LRA's default, "
       "ignore_dot_product=False: a plain sum); false: synthetic logits only (the paper's pure Synthesizer)"},
      {"k", 32, "rank of the factorized mode (LRA's k = 32); unused by the other modes"}};
  return make_attn_info<SynthesizerAttention, SynthesizerOptions>(info);
}

}  // namespace lra
