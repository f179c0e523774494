// cosFormer (Qin et al., ICLR 2022): ReLU features re-weighted by cos(pi/2 (i - j)/M), decomposed with
// cos(a - b) = cos a cos b + sin a sin b into one linear attention over 2 dk features. As in the
// official code: positions count from 1, theta_i = pi/2 i/M with M the padded length, and the
// normaliser is clamped, max(D, eps). Keys hidden by the mask are zeroed after the feature map, so
// they reach neither numerator nor denominator. Linear in L: no L x L matrix is ever formed.
//
// Per (b, h):  Qh = [relu(Q) sin(theta) | relu(Q) cos(theta)]   (L x 2dk)
//              Kh = [relu(K) sin(theta) | relu(K) cos(theta)] mu
//   forward:   [S | z] = Kh^T [V | 1],  [N | D] = Qh [S | z],  O = N / max(D, eps)
//   backward:  r = 1/max(D, eps),  dN = r dO,  dD = -r (dO . O) [D >= eps]
//              dQh = [dN | dD] [S | z]^T,  [dS | dz] = Qh^T [dN | dD]
//              dKh = ([V | 1] [dS | dz]^T) mu,  dV = Kh dS
//              dQ = [Q > 0] (sin(theta) dQh_sin + cos(theta) dQh_cos), dK likewise from dKh.
// Saved for the backward: [S | z] per (b, h) and D per (row, head).
#include <omp.h>

#include <cmath>

#include "attn/attention.h"
#include "core/arena.h"
#include "ops/math.h"
#include "ops/parallel.h"

namespace lra {

namespace {

template <class T>
class CosformerAttention final : public Attention<T> {
 public:
  explicit CosformerAttention(const AttnConfig& c) : c_(c), eps_(static_cast<T>(c.hp.at("eps").get<double>())) {}

  size_t saved_bytes(int B, int64_t rows) const override {
    return align_up(sizeof(T) * state_size() * B * c_.heads, Arena::kAlign) + sizeof(T) * rows * c_.heads;
  }
  size_t scratch_bytes(int, int64_t) const override { return per_thread_bytes() * c_.threads; }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch, const AttnStep&) override {
    T* states = static_cast<T*>(saved);
    T* den = states + align_up(sizeof(T) * state_size() * seq.B * c_.heads, Arena::kAlign) / sizeof(T);
    check_sequence_lengths(seq, c_.max_len);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      forward_one(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads),
                  states + t * state_size(), den, thread_scratch(scratch));
    }
  }

  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved,
                void* scratch, const AttnStep&) override {
    const T* states = static_cast<const T*>(saved);
    const T* den = states + align_up(sizeof(T) * state_size() * seq.B * c_.heads, Arena::kAlign) / sizeof(T);
    check_sequence_lengths(seq, c_.max_len);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads),
                   states + t * state_size(), den, thread_scratch(scratch));
    }
  }

 private:
  struct Work {
    T* qh;   // L x 2dk
    T* kh;   // L x 2dk
    T* ve;   // L x (dv + 1): [V | 1]
    T* g;    // L x (dv + 1): [N | D], then [dN | dD]
    T* dqh;  // L x 2dk
    T* dkh;  // L x 2dk
    T* ds;   // 2dk x (dv + 1)
    T* sn;   // L: sin(theta)
    T* cs;   // L: cos(theta)
  };

  int64_t state_size() const { return static_cast<int64_t>(2 * c_.dk) * (c_.dv + 1); }

  size_t per_thread_bytes() const {
    const size_t L = static_cast<size_t>(c_.max_len), f = 2 * c_.dk, e = c_.dv + 1;
    const size_t n = 4 * L * f + 2 * L * e + f * e + 2 * L;
    return align_up(n * sizeof(T) + 10 * Arena::kAlign, Arena::kAlign);
  }

  Work thread_scratch(void* scratch) const {
    char* base = static_cast<char*>(scratch) + per_thread_bytes() * omp_get_thread_num();
    const size_t L = static_cast<size_t>(c_.max_len), f = 2 * c_.dk, e = c_.dv + 1;
    auto take = [&](size_t n) {
      T* p = reinterpret_cast<T*>(base);
      base += align_up(n * sizeof(T), Arena::kAlign);
      return p;
    };
    Work w;
    w.qh = take(L * f);
    w.kh = take(L * f);
    w.ve = take(L * e);
    w.g = take(L * e);
    w.dqh = take(L * f);
    w.dkh = take(L * f);
    w.ds = take(f * e);
    w.sn = take(L);
    w.cs = take(L);
    return w;
  }

  // Fills sin/cos of theta_i = pi/2 (i + 1)/M and the feature maps Qh, Kh and [V | 1].
  void features(const SeqBatch& seq, const AttnIO<T>& io, int64_t r0, int L, int h, const Work& w) const {
    const int dk = c_.dk, dv = c_.dv, f = 2 * dk, e = dv + 1;
    const double M = static_cast<double>(seq.L_pad);
    const uint8_t* mu = seq.key_mask != nullptr ? seq.key_mask + r0 : nullptr;
    for (int i = 0; i < L; ++i) {
      const double theta = 1.5707963267948966 * (i + 1) / M;
      const T sn = static_cast<T>(std::sin(theta)), cs = static_cast<T>(std::cos(theta));
      w.sn[i] = sn;
      w.cs[i] = cs;
      const T* q = io.q + (r0 + i) * io.ld_in + h * dk;
      const T* k = io.k + (r0 + i) * io.ld_in + h * dk;
      const T* v = io.v + (r0 + i) * io.ld_in + h * dv;
      T* qh = w.qh + static_cast<int64_t>(i) * f;
      T* kh = w.kh + static_cast<int64_t>(i) * f;
      const T km = (mu == nullptr || mu[i] != 0) ? T(1) : T(0);
      for (int c = 0; c < dk; ++c) {
        const T rq = relu(q[c]), rk = relu(k[c]) * km;
        qh[c] = rq * sn;
        qh[dk + c] = rq * cs;
        kh[c] = rk * sn;
        kh[dk + c] = rk * cs;
      }
      T* ve = w.ve + static_cast<int64_t>(i) * e;
      for (int c = 0; c < dv; ++c) ve[c] = v[c];
      ve[dv] = T(1);
    }
  }

  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* state, T* den, const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int L = seq.length(b);
    const int f = 2 * c_.dk, e = c_.dv + 1, dv = c_.dv;
    MapR<T> S(state, f, e, Eigen::OuterStride<>(e));
    if (L == 0) {
      S.setZero();
      return;
    }
    features(seq, io, r0, L, h, w);
    MapR<T> Qh(w.qh, L, f, Eigen::OuterStride<>(f));
    MapR<T> Kh(w.kh, L, f, Eigen::OuterStride<>(f));
    MapR<T> Ve(w.ve, L, e, Eigen::OuterStride<>(e));
    MapR<T> ND(w.g, L, e, Eigen::OuterStride<>(e));
    S.noalias() = Kh.transpose() * Ve;
    ND.noalias() = Qh * S;
    for (int i = 0; i < L; ++i) {
      const T d = ND(i, dv);
      den[(r0 + i) * c_.heads + h] = d;
      const T r = T(1) / std::max(d, eps_);
      T* o = io.out + (r0 + i) * io.ld_out + h * dv;
      for (int c = 0; c < dv; ++c) o[c] = ND(i, c) * r;
    }
  }

  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h,
                    const T* state, const T* den, const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int L = seq.length(b);
    if (L == 0) return;
    const int dk = c_.dk, dv = c_.dv, f = 2 * dk, e = dv + 1;
    features(seq, io, r0, L, h, w);
    CMapR<T> S(state, f, e, Eigen::OuterStride<>(e));
    MapR<T> Qh(w.qh, L, f, Eigen::OuterStride<>(f));
    MapR<T> Kh(w.kh, L, f, Eigen::OuterStride<>(f));
    MapR<T> Ve(w.ve, L, e, Eigen::OuterStride<>(e));
    MapR<T> G(w.g, L, e, Eigen::OuterStride<>(e));
    MapR<T> dQh(w.dqh, L, f, Eigen::OuterStride<>(f));
    MapR<T> dKh(w.dkh, L, f, Eigen::OuterStride<>(f));
    MapR<T> dS(w.ds, f, e, Eigen::OuterStride<>(e));
    for (int i = 0; i < L; ++i) {
      const T d = den[(r0 + i) * c_.heads + h];
      const T r = T(1) / std::max(d, eps_);
      const T* dout = g.dout + (r0 + i) * io.ld_out + h * dv;
      const T* o = io.out + (r0 + i) * io.ld_out + h * dv;
      T dot = 0;
      for (int c = 0; c < dv; ++c) {
        G(i, c) = r * dout[c];
        dot += dout[c] * o[c];
      }
      G(i, dv) = d >= eps_ ? -r * dot : T(0);
    }
    dQh.noalias() = G * S.transpose();
    dS.noalias() = Qh.transpose() * G;
    dKh.noalias() = Ve * dS.transpose();
    MapR<T> dV(g.dv + r0 * io.ld_in + h * dv, L, dv, Eigen::OuterStride<>(io.ld_in));
    dV.noalias() = Kh * dS.leftCols(dv);
    const uint8_t* mu = seq.key_mask != nullptr ? seq.key_mask + r0 : nullptr;
    for (int i = 0; i < L; ++i) {
      const T* q = io.q + (r0 + i) * io.ld_in + h * dk;
      const T* k = io.k + (r0 + i) * io.ld_in + h * dk;
      T* dq = g.dq + (r0 + i) * io.ld_in + h * dk;
      T* dkp = g.dk + (r0 + i) * io.ld_in + h * dk;
      const T sn = w.sn[i], cs = w.cs[i];
      const T km = (mu == nullptr || mu[i] != 0) ? T(1) : T(0);
      for (int c = 0; c < dk; ++c) {
        dq[c] = q[c] > T(0) ? sn * dQh(i, c) + cs * dQh(i, dk + c) : T(0);
        dkp[c] = k[c] > T(0) ? km * (sn * dKh(i, c) + cs * dKh(i, dk + c)) : T(0);
      }
    }
  }

  AttnConfig c_;
  T eps_;
};

}  // namespace

AttnInfo cosformer_attention_info() {
  AttnInfo info;
  info.name = "cosformer";
  info.summary =
      "cosFormer (Qin et al. 2022): ReLU features with cos re-weighting pi/2 (i-j)/M, M = padded length, "
      "positions from 1, normaliser max(D, eps) as in the official code; no attention weights to drop";
  info.complexity = "time O(L d^2), memory O(L d)";
  info.params = {{"eps", 1e-6, "clamp of the normaliser: O = N / max(D, eps)"}};
  return make_attn_info<CosformerAttention>(info);
}

}  // namespace lra
