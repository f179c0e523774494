// Kernelised attention, the machinery shared by linear, performer, performer-relu and cosformer
// (docs/attention.md, section 2). A variant supplies a feature map phi: R^dk -> R^m; this engine does
// the rest, bidirectional or causal, in time and memory linear in L (no L x L matrix is ever formed).
//
// Per (example, head), mu = key mask, Ve = [V | 1]:
//   Phi_Q = phi(Q),  Phi_K = diag(mu) phi(K)      (masked keys are zeroed AFTER the feature map, so they
//                                                  reach neither the numerator nor the denominator)
//   bidirectional:  [S | z] = Phi_K^T Ve,  [N | D] = Phi_Q [S | z]
//   causal, in chunks of C rows (T = [S | z] of the rows before the chunk):
//                   [N | D]_c = Phi_Q,c T + tril(Phi_Q,c Phi_K,c^T) Ve_c,  T += Phi_K,c^T Ve_c
//   O = N r with r = 1/(D + eps) (Guard::Add) or 1/max(D, eps) (Guard::Clamp).
// Backward, G = [dN | dD] = [r dO | -r (dO . O)] (dD = 0 where the clamp is active):
//   bidirectional:  dPhi_Q = G [S | z]^T,  U = Phi_Q^T G,  dPhi_K = mu (Ve U^T),  dV = Phi_K U_N
//   causal, chunks in reverse, U = sum over later chunks of Phi_Q^T G:
//                   dA = tril(G_c Ve_c^T),  dPhi_Q,c = G_c T^T + dA Phi_K,c
//                   dPhi_K,c = dA^T Phi_Q,c + Ve_c U^T,  dV_c = tril(Phi_Q,c Phi_K,c^T)^T dN_c + Phi_K,c U_N
// then dQ, dK from the feature map's own backward. Only D (one value per row and head) is kept from the
// forward; the backward recomputes the features and, when causal, the chunk states, so no per-position
// m x dv state is ever stored.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "attn/attention.h"
#include "core/check.h"

namespace lra {

// The rows of Q or K of one (example, head) that a feature map transforms.
template <class T>
struct FeatureRows {
  const T* x = nullptr;  // row i at x + i * ld, dk values
  int64_t ld = 0;
  int L = 0;              // rows (the example's length)
  int L_pad = 0;          // the batch's padded length (cosFormer's M)
  const uint8_t* mu = nullptr;  // keys only: 1 = real key, nullptr = all real
  bool key = false;
};

template <class T>
class FeatureMap {
 public:
  virtual ~FeatureMap() = default;
  virtual int features() const = 0;  // m
  // Working memory of one map or map_backward call on L rows, in elements of T.
  virtual size_t scratch_elems(int) const { return 0; }
  // Called once per forward, before the parallel loop (Performer draws its projection here).
  virtual void prepare(const AttnStep&) {}
  // Performer's projection, given from outside (tests and PyTorch parity): m x dk, row-major.
  virtual void set_random_features(const std::vector<double>&) {
    LRA_FAIL("this attention variant draws no random features; only performer and performer-relu (features > 0) do");
  }
  // phi (L x m, row stride m) of the rows; rows of masked keys may hold anything (they are zeroed
  // after). aux: L + 1 integers the map may keep for its backward (argmax positions).
  virtual void map(const FeatureRows<T>& in, T* phi, T* scratch, int64_t* aux) const = 0;
  // dx (row stride ld_dx, overwritten) from dphi (L x m, may be overwritten; zero on masked keys), given
  // the phi and aux the map produced for the same rows.
  virtual void map_backward(const FeatureRows<T>& in, const T* phi, T* dphi, T* dx, int64_t ld_dx, T* scratch,
                            const int64_t* aux) const = 0;
};

enum class Guard { Add, Clamp };

// The options every kernelised variant reads, on every device: causal, and the normaliser's eps (> 0).
struct KernelizedOptions {
  bool causal = false;
  double eps = 0.0;
  static KernelizedOptions parse(const AttnConfig& c);
};

template <class T>
class KernelizedAttention : public Attention<T> {
 public:
  KernelizedAttention(const AttnConfig& c, std::unique_ptr<FeatureMap<T>> fm, Guard guard);

  size_t saved_bytes(int B, int64_t rows) const override;
  size_t scratch_bytes(int B, int64_t rows) const override;
  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch, const AttnStep& step) override;
  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved, void* scratch,
                const AttnStep& step) override;
  void set_random_features(const std::vector<double>& w) override { fm_->set_random_features(w); }

  static constexpr int kChunk = 64;  // causal chunk length

 private:
  struct Work;
  size_t per_thread_bytes() const;
  Work thread_scratch(void* scratch) const;
  FeatureRows<T> rows(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, bool key) const;
  void features(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, const Work& w) const;
  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* den, const Work& w) const;
  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h, const T* den,
                    const Work& w) const;
  T inverse(T d) const { return guard_ == Guard::Add ? T(1) / (d + eps_) : T(1) / std::max(d, eps_); }

  AttnConfig c_;
  std::unique_ptr<FeatureMap<T>> fm_;
  Guard guard_;
  KernelizedOptions o_;
  T eps_;
  int m_;
};

}  // namespace lra
