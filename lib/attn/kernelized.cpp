#include "attn/kernelized.h"

#include <omp.h>

#include "core/arena.h"
#include "ops/instantiate.h"
#include "ops/parallel.h"

namespace lra {

KernelizedOptions KernelizedOptions::parse(const AttnConfig& c) {
  const KernelizedOptions o{c.hp.at("causal").get<bool>(), c.hp.at("eps").get<double>()};
  LRA_CHECK(o.eps > 0, "eps must be positive, got {}", c.hp.at("eps").dump());
  return o;
}

template <class T>
struct KernelizedAttention<T>::Work {
  T* phq;     // L x m: Phi_Q
  T* phk;     // L x m: Phi_K (masked rows zero)
  T* ve;      // L x e: [V | 1]
  T* g;       // L x e: [N | D] in the forward, [dN | dD] in the backward
  T* dphq;    // L x m
  T* dphk;    // L x m
  T* st;      // m x e: [S | z]
  T* u;       // m x e: U
  T* states;  // causal backward: the state before each chunk, chunks x m x e
  T* a;       // C x C
  T* da;      // C x C
  T* fs;      // the feature map's scratch
  int64_t* auxq;
  int64_t* auxk;
};

template <class T>
KernelizedAttention<T>::KernelizedAttention(const AttnConfig& c, std::unique_ptr<FeatureMap<T>> fm, Guard guard)
    : c_(c),
      fm_(std::move(fm)),
      guard_(guard),
      o_(KernelizedOptions::parse(c)),
      eps_(static_cast<T>(o_.eps)),
      m_(fm_->features()) {}

template <class T>
size_t KernelizedAttention<T>::saved_bytes(int, int64_t rows) const {
  return sizeof(T) * static_cast<size_t>(rows) * c_.heads;
}

template <class T>
size_t KernelizedAttention<T>::scratch_bytes(int, int64_t) const {
  return per_thread_bytes() * c_.threads;
}

template <class T>
size_t KernelizedAttention<T>::per_thread_bytes() const {
  const size_t L = static_cast<size_t>(c_.max_len), m = m_, e = c_.dv + 1, C = kChunk;
  const size_t chunks = (L + C - 1) / C;
  size_t n = 4 * L * m + 2 * L * e + 2 * m * e + fm_->scratch_elems(c_.max_len);
  if (o_.causal) n += chunks * m * e + 2 * C * C;
  return align_up(n * sizeof(T) + 2 * (L + 1) * sizeof(int64_t) + 16 * Arena::kAlign, Arena::kAlign);
}

template <class T>
typename KernelizedAttention<T>::Work KernelizedAttention<T>::thread_scratch(void* scratch) const {
  ScratchCarver sc(static_cast<char*>(scratch) + per_thread_bytes() * omp_get_thread_num());
  const size_t L = static_cast<size_t>(c_.max_len), m = m_, e = c_.dv + 1, C = kChunk;
  Work w;
  w.phq = sc.take<T>(L * m);
  w.phk = sc.take<T>(L * m);
  w.ve = sc.take<T>(L * e);
  w.g = sc.take<T>(L * e);
  w.dphq = sc.take<T>(L * m);
  w.dphk = sc.take<T>(L * m);
  w.st = sc.take<T>(m * e);
  w.u = sc.take<T>(m * e);
  w.states = o_.causal ? sc.take<T>((L + C - 1) / C * m * e) : nullptr;
  w.a = o_.causal ? sc.take<T>(C * C) : nullptr;
  w.da = o_.causal ? sc.take<T>(C * C) : nullptr;
  w.fs = sc.take<T>(fm_->scratch_elems(c_.max_len));
  w.auxq = sc.take<int64_t>(2 * (L + 1));
  w.auxk = w.auxq + L + 1;
  return w;
}

template <class T>
void KernelizedAttention<T>::forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch,
                                     const AttnStep& step) {
  check_sequence_lengths(seq, c_.max_len);
  fm_->prepare(step);
  T* den = static_cast<T*>(saved);
  const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
  for (int64_t t = 0; t < tasks; ++t)
    forward_one(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), den,
                thread_scratch(scratch));
}

template <class T>
void KernelizedAttention<T>::backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g,
                                      const void* saved, void* scratch, const AttnStep&) {
  check_sequence_lengths(seq, c_.max_len);
  const T* den = static_cast<const T*>(saved);
  const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
  for (int64_t t = 0; t < tasks; ++t)
    backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), den,
                 thread_scratch(scratch));
}

// The query (key = false) or key rows of example b, head h, as the feature map sees them.
template <class T>
FeatureRows<T> KernelizedAttention<T>::rows(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, bool key) const {
  const int64_t r0 = seq.offsets[b];
  const uint8_t* mu = key && seq.key_mask != nullptr ? seq.key_mask + r0 : nullptr;
  return {(key ? io.k : io.q) + r0 * io.ld_in + h * c_.dk, io.ld_in, seq.length(b), seq.L_pad, mu, key};
}

// Phi_Q, Phi_K (masked rows zeroed) and [V | 1] of example b, head h.
template <class T>
void KernelizedAttention<T>::features(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, const Work& w) const {
  const int64_t r0 = seq.offsets[b];
  const int L = seq.length(b), dv = c_.dv, e = dv + 1;
  const FeatureRows<T> k = rows(seq, io, b, h, true);
  fm_->map(rows(seq, io, b, h, false), w.phq, w.fs, w.auxq);
  fm_->map(k, w.phk, w.fs, w.auxk);
  for (int i = 0; i < L; ++i) {
    if (k.mu != nullptr && k.mu[i] == 0) std::fill(w.phk + static_cast<int64_t>(i) * m_, w.phk + (i + 1LL) * m_, T(0));
    const T* v = io.v + (r0 + i) * io.ld_in + h * dv;
    T* ve = w.ve + static_cast<int64_t>(i) * e;
    std::copy(v, v + dv, ve);
    ve[dv] = T(1);
  }
}

template <class T>
void KernelizedAttention<T>::forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* den,
                                         const Work& w) const {
  const int64_t r0 = seq.offsets[b];
  const int L = seq.length(b), dv = c_.dv, e = dv + 1, m = m_;
  if (L == 0) return;
  features(seq, io, b, h, w);
  MapR<T> Pq(w.phq, L, m, Eigen::OuterStride<>(m));
  MapR<T> Pk(w.phk, L, m, Eigen::OuterStride<>(m));
  MapR<T> Ve(w.ve, L, e, Eigen::OuterStride<>(e));
  MapR<T> ND(w.g, L, e, Eigen::OuterStride<>(e));
  MapR<T> S(w.st, m, e, Eigen::OuterStride<>(e));
  if (!o_.causal) {
    S.noalias() = Pk.transpose() * Ve;
    ND.noalias() = Pq * S;
  } else {
    S.setZero();
    for (int c0 = 0; c0 < L; c0 += kChunk) {
      const int n = std::min(kChunk, L - c0);
      MapR<T> A(w.a, n, n, Eigen::OuterStride<>(n));
      ND.middleRows(c0, n).noalias() = Pq.middleRows(c0, n) * S;
      A.noalias() = Pq.middleRows(c0, n) * Pk.middleRows(c0, n).transpose();
      A.template triangularView<Eigen::StrictlyUpper>().setZero();
      ND.middleRows(c0, n).noalias() += A * Ve.middleRows(c0, n);
      S.noalias() += Pk.middleRows(c0, n).transpose() * Ve.middleRows(c0, n);
    }
  }
  for (int i = 0; i < L; ++i) {
    const T d = ND(i, dv);
    den[(r0 + i) * c_.heads + h] = d;
    const T r = inverse(d);
    T* o = io.out + (r0 + i) * io.ld_out + h * dv;
    for (int c = 0; c < dv; ++c) o[c] = ND(i, c) * r;
  }
}

template <class T>
void KernelizedAttention<T>::backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b,
                                          int h, const T* den, const Work& w) const {
  const int64_t r0 = seq.offsets[b];
  const int L = seq.length(b), dv = c_.dv, e = dv + 1, m = m_;
  if (L == 0) return;
  features(seq, io, b, h, w);
  MapR<T> Pq(w.phq, L, m, Eigen::OuterStride<>(m));
  MapR<T> Pk(w.phk, L, m, Eigen::OuterStride<>(m));
  MapR<T> Ve(w.ve, L, e, Eigen::OuterStride<>(e));
  MapR<T> G(w.g, L, e, Eigen::OuterStride<>(e));
  MapR<T> dPq(w.dphq, L, m, Eigen::OuterStride<>(m));
  MapR<T> dPk(w.dphk, L, m, Eigen::OuterStride<>(m));
  MapR<T> S(w.st, m, e, Eigen::OuterStride<>(e));
  MapR<T> U(w.u, m, e, Eigen::OuterStride<>(e));
  MapR<T> dV(g.dv + r0 * io.ld_in + h * dv, L, dv, Eigen::OuterStride<>(io.ld_in));
  for (int i = 0; i < L; ++i) {
    const T d = den[(r0 + i) * c_.heads + h];
    const T r = inverse(d);
    const T* dout = g.dout + (r0 + i) * io.ld_out + h * dv;
    const T* o = io.out + (r0 + i) * io.ld_out + h * dv;
    T dot = 0;
    for (int c = 0; c < dv; ++c) {
      G(i, c) = r * dout[c];
      dot += dout[c] * o[c];
    }
    G(i, dv) = (guard_ == Guard::Clamp && d < eps_) ? T(0) : -r * dot;
  }
  if (!o_.causal) {
    S.noalias() = Pk.transpose() * Ve;
    dPq.noalias() = G * S.transpose();
    U.noalias() = Pq.transpose() * G;
    dPk.noalias() = Ve * U.transpose();
    dV.noalias() = Pk * U.leftCols(dv);
  } else {
    const int chunks = (L + kChunk - 1) / kChunk;
    S.setZero();
    for (int c = 0; c < chunks; ++c) {
      const int c0 = c * kChunk, n = std::min(kChunk, L - c0);
      std::copy(w.st, w.st + static_cast<int64_t>(m) * e, w.states + static_cast<int64_t>(c) * m * e);
      S.noalias() += Pk.middleRows(c0, n).transpose() * Ve.middleRows(c0, n);
    }
    U.setZero();
    for (int c = chunks - 1; c >= 0; --c) {
      const int c0 = c * kChunk, n = std::min(kChunk, L - c0);
      CMapR<T> Tc(w.states + static_cast<int64_t>(c) * m * e, m, e, Eigen::OuterStride<>(e));
      MapR<T> A(w.a, n, n, Eigen::OuterStride<>(n));
      MapR<T> dA(w.da, n, n, Eigen::OuterStride<>(n));
      const auto Gc = G.middleRows(c0, n);
      dA.noalias() = Gc * Ve.middleRows(c0, n).transpose();
      dA.template triangularView<Eigen::StrictlyUpper>().setZero();
      A.noalias() = Pq.middleRows(c0, n) * Pk.middleRows(c0, n).transpose();
      A.template triangularView<Eigen::StrictlyUpper>().setZero();
      dPq.middleRows(c0, n).noalias() = Gc * Tc.transpose();
      dPq.middleRows(c0, n).noalias() += dA * Pk.middleRows(c0, n);
      dPk.middleRows(c0, n).noalias() = dA.transpose() * Pq.middleRows(c0, n);
      dPk.middleRows(c0, n).noalias() += Ve.middleRows(c0, n) * U.transpose();
      dV.middleRows(c0, n).noalias() = A.transpose() * Gc.leftCols(dv);
      dV.middleRows(c0, n).noalias() += Pk.middleRows(c0, n) * U.leftCols(dv);
      U.noalias() += Pq.middleRows(c0, n).transpose() * Gc;
    }
  }
  const FeatureRows<T> k = rows(seq, io, b, h, true);
  if (k.mu != nullptr)
    for (int i = 0; i < L; ++i)
      if (k.mu[i] == 0) dPk.row(i).setZero();
  fm_->map_backward(rows(seq, io, b, h, false), w.phq, w.dphq, g.dq + r0 * io.ld_in + h * c_.dk, io.ld_in, w.fs,
                    w.auxq);
  fm_->map_backward(k, w.phk, w.dphk, g.dk + r0 * io.ld_in + h * c_.dk, io.ld_in, w.fs, w.auxk);
}

#define LRA_KERNELIZED(T) template class KernelizedAttention<T>;
LRA_INSTANTIATE(LRA_KERNELIZED)

}  // namespace lra
