// Kernelised attention on the GPU: linear, performer, performer-relu and cosformer, the same maths, masks,
// guards, random features and saved state as lib/attn/kernelized.cpp with its feature maps.
// Per (example, head), mu = key mask, Ve = [V | 1], chunks of C = 64 rows when causal:
//   Phi_Q = phi(Q),  Phi_K = diag(mu) phi(K)
//   bidirectional:  [S | z] = Phi_K^T Ve,  [N | D] = Phi_Q [S | z]
//   causal:         [N | D]_c = Phi_Q,c T_c + tril(Phi_Q,c Phi_K,c^T) Ve_c,  T_c = the state of chunks < c
//   O = N r, r = 1/(D + eps) (linear) or 1/max(D, eps) (the others)
// Backward, G = [dN | dD] = [r dO | -r (dO . O)] (dD = 0 where the clamp is active), U_c = sum over
// chunks > c of Phi_Q^T G (bidirectional: U = Phi_Q^T G, T = S, no tril terms):
//   dPhi_Q,c = G_c T_c^T + dA Phi_K,c,  dA = tril(G_c Ve_c^T)
//   dPhi_K,c = mu (dA^T Phi_Q,c + Ve_c U_c^T),  dV_c = tril(Phi_Q,c Phi_K,c^T)^T dN_c + Phi_K,c U_c,N
// then dQ, dK through the feature map's backward (kernelized_features.cu).
//
// Passes (kernels in kernelized_engine.cu and kernelized_features.cu, all on the Context's stream):
//   forward:  Phi_Q, Phi_K -> chunk states Phi_K,c^T Ve_c -> scan (total or exclusive) -> [N | D] -> O, D
//   backward: Phi_Q, Phi_K (recomputed) -> G -> states Phi_Q,c^T G_c, reverse scan (U) -> dPhi_K, dV ->
//             dK -> states Phi_K,c^T Ve_c, scan (T) -> dPhi_Q -> dQ
// Saved: D per (row, head), as on the CPU. Scratch (planned by scratch_bytes): Phi_Q, Phi_K and one dPhi
// (rows x heads x m each), [N | D] or G (rows x heads x (dv + 1)), the chunk states
// (B x ceil(max_len / 64) x heads x m x (dv + 1)) and, for performer, O(rows x heads) argmax bookkeeping.
// Random features: drawn on the host by draw_projection (seed, layer, the redraw policy's draw for the
// step) exactly as the CPU's Projection, converted to float and copied (W and W^T) into a device buffer
// the variant owns, once per new draw.
#include <cuda_runtime.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "attn/random_features.h"
#include "core/arena.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/kernelized.h"

namespace lra::cuda {

namespace {

using kernelized::FeatureAux;
using kernelized::FeatureParams;
using kernelized::Layout;
using kernelized::MapKind;
using kernelized::RowMat;
using kernelized::RowsArgs;
using kernelized::Scan;

// What one kernelised variant is on the GPU: its feature map and the normaliser's guard (the CPU's
// lib/attn/<variant>.cpp chooses the same).
struct FeatureMapSpec {
  MapKind kind = MapKind::Elu;
  int m = 0;                // features per head
  Guard guard = Guard::Clamp;
  bool projected = false;   // a random projection W (m x dk), drawn under random.redraw
  float feature_eps = 0.0f;  // performer
  float kernel_eps = 0.0f;   // performer-relu
  PerformerOptions random;   // performer, performer-relu
};

FeatureMapSpec linear_map(const AttnConfig& c) { return {MapKind::Elu, c.dk, Guard::Add, false, 0.0f, 0.0f, {}}; }

FeatureMapSpec cosformer_map(const AttnConfig& c) {
  return {MapKind::Cos, 2 * c.dk, Guard::Clamp, false, 0.0f, 0.0f, {}};
}

FeatureMapSpec performer_map(const AttnConfig& c) {
  const PerformerOptions o = PerformerOptions::parse(c);
  return {MapKind::Favor, o.features, Guard::Clamp, true, static_cast<float>(o.eps), 0.0f, o};
}

FeatureMapSpec performer_relu_map(const AttnConfig& c) {
  const PerformerOptions o = PerformerOptions::parse_relu(c);
  const int m = o.features;
  return {m > 0 ? MapKind::ReluProj : MapKind::Relu, m > 0 ? m : c.dk, Guard::Clamp, m > 0, 0.0f,
          static_cast<float>(o.eps), o};
}

class KernelizedGpu final : public Attention<float> {
 public:
  KernelizedGpu(const std::string& name, const FeatureMapSpec& map, const AttnConfig& c, const Context& ctx);
  ~KernelizedGpu() override { cudaFree(w_dev_); }
  KernelizedGpu(const KernelizedGpu&) = delete;
  KernelizedGpu& operator=(const KernelizedGpu&) = delete;

  size_t saved_bytes(int, int64_t rows) const override {
    return sizeof(float) * static_cast<size_t>(rows) * c_.heads;
  }
  size_t scratch_bytes(int B, int64_t rows) const override {
    size_t bytes = 0;
    carve(nullptr, B, rows, &bytes);
    return bytes;
  }
  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch,
               const AttnStep& step) override;
  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep& step) override;
  void set_random_features(const std::vector<double>& w) override;

 private:
  struct Work {
    float* phq;     // rows x heads x m
    float* phk;     // rows x heads x m (masked keys zero)
    float* dphi;    // rows x heads x m: dPhi_K, then dPhi_Q
    float* nd;      // rows x heads x e: [N | D] in the forward, G in the backward
    float* states;  // B x tiles x heads x m x e
    FeatureAux aux;
  };
  // The scratch layout for B examples and `rows` rows from `base` (nullptr: only its size, in *bytes).
  Work carve(void* base, int B, int64_t rows, size_t* bytes) const;
  Layout layout(const SeqBatch& seq) const {
    return Layout{seq.dev_offsets, seq.B, c_.heads, tiles_, seq.rows()};
  }
  void prepare(const AttnStep& step);
  void upload(const std::vector<double>& w);
  void features(const SeqBatch& seq, const AttnIO<float>& io, const Work& w, const Layout& lay) const;

  RowMat phi(const float* p) const { return {p, static_cast<int64_t>(c_.heads) * m_, m_, m_, m_}; }
  RowMat rows_e(const float* p) const { return {p, static_cast<int64_t>(c_.heads) * e_, e_, e_, e_}; }
  RowMat ve(const AttnIO<float>& io) const { return {io.v, io.ld_in, c_.dv, e_, c_.dv}; }
  RowsArgs rows_args(const RowMat& y, const RowMat& z, const RowMat& w, const float* states, bool transposed,
                     bool lower) const;

  std::string name_;
  AttnConfig c_;
  Context ctx_;
  FeatureParams fp_;
  Guard guard_;
  KernelizedOptions o_;
  float eps_;
  int m_, e_, tiles_;
  // The projection (performer, performer-relu with features > 0) and when to redraw it.
  bool projected_ = false;
  bool orthogonal_ = true;
  RedrawPolicy policy_;
  bool fixed_ = false, drawn_ = false;
  uint64_t seed_ = 0;
  int64_t draw_ = 0;
  std::vector<float> w_host_;  // W (m x dk) then W^T (dk x m)
  float* w_dev_ = nullptr;
};

KernelizedGpu::KernelizedGpu(const std::string& name, const FeatureMapSpec& map, const AttnConfig& c,
                             const Context& ctx)
    : name_(name),
      c_(c),
      ctx_(ctx),
      guard_(map.guard),
      o_(KernelizedOptions::parse(c)),
      eps_(static_cast<float>(o_.eps)),
      e_(c.dv + 1),
      tiles_((c.max_len + kernelized::kTile - 1) / kernelized::kTile),
      projected_(map.projected) {
  fp_.dk = c.dk;
  fp_.causal = o_.causal;
  fp_.kind = map.kind;
  fp_.m = map.m;
  fp_.feature_eps = map.feature_eps;
  fp_.kernel_eps = map.kernel_eps;
  m_ = fp_.m;
  if (projected_) {
    orthogonal_ = map.random.orthogonal;
    policy_ = map.random.redraw;
    // The CPU's constants, in float: dk^-1/4, m^-1/2, m^1/2.
    fp_.scale = 1.0f / std::pow(static_cast<float>(c.dk), 0.25f);
    fp_.isq = 1.0f / std::sqrt(static_cast<float>(m_));
    fp_.sq = std::sqrt(static_cast<float>(m_));
    LRA_CHECK(sizeof(float) * kernelized::kWarps * static_cast<size_t>(c.dk) <= 48 * 1024,
              "{}: head size {} is too large for the GPU feature kernels (at most 1536)", name, c.dk);
    LRA_CHECK(static_cast<int64_t>(c.max_len) * m_ < (int64_t{1} << 31),
              "{}: max_len x features = {} x {} is too large for the GPU kernels", name, c.max_len, m_);
    w_host_.assign(2 * static_cast<size_t>(m_) * c.dk, 0.0f);
    CUDA_CHECK(cudaMalloc(&w_dev_, sizeof(float) * w_host_.size()));
    fp_.w = w_dev_;
    fp_.wt = w_dev_ + static_cast<size_t>(m_) * c.dk;
  }
}

KernelizedGpu::Work KernelizedGpu::carve(void* base, int B, int64_t rows, size_t* bytes) const {
  ScratchCarver sc(base);
  const size_t rh = static_cast<size_t>(rows) * c_.heads, bh = static_cast<size_t>(B) * c_.heads;
  Work w{};
  w.phq = sc.take<float>(rh * m_);
  w.phk = sc.take<float>(rh * m_);
  w.dphi = sc.take<float>(rh * m_);
  w.nd = sc.take<float>(rh * e_);
  w.states = sc.take<float>(bh * tiles_ * m_ * e_);
  if (fp_.kind == MapKind::Favor) {
    w.aux.qarg = sc.take<int32_t>(rh);
    w.aux.rowmax = sc.take<float>(rh);
    w.aux.rowarg = sc.take<int32_t>(rh);
    w.aux.rowhalf = sc.take<float>(rh);
    w.aux.dh = sc.take<float>(rh);
    w.aux.kstab = sc.take<float>(bh);
    w.aux.karg = sc.take<int32_t>(bh);
    w.aux.ds = sc.take<float>(bh);
  }
  *bytes = sc.used();
  return w;
}

void KernelizedGpu::prepare(const AttnStep& step) {
  if (!projected_ || fixed_) return;
  const int64_t draw = policy_.draw(step.step);
  if (drawn_ && seed_ == step.seed && draw_ == draw) return;
  upload(draw_projection(m_, c_.dk, orthogonal_, step.seed, c_.layer, draw));
  drawn_ = true;
  seed_ = step.seed;
  draw_ = draw;
}

// W (m x dk) and W^T in float into the device buffer, ordered on the stream after the work before it.
void KernelizedGpu::upload(const std::vector<double>& w) {
  const int dk = c_.dk;
  float* wt = w_host_.data() + static_cast<size_t>(m_) * dk;
  for (int r = 0; r < m_; ++r)
    for (int j = 0; j < dk; ++j) {
      const float v = static_cast<float>(w[static_cast<size_t>(r) * dk + j]);
      w_host_[static_cast<size_t>(r) * dk + j] = v;
      wt[static_cast<size_t>(j) * m_ + r] = v;
    }
  CUDA_CHECK(cudaMemcpyAsync(w_dev_, w_host_.data(), sizeof(float) * w_host_.size(), cudaMemcpyHostToDevice,
                             ctx_.stream));
}

void KernelizedGpu::set_random_features(const std::vector<double>& w) {
  if (!projected_) {
    if (fp_.kind == MapKind::Relu) LRA_FAIL("performer-relu with features=0 has no random features to set");
    Attention<float>::set_random_features(w);  // throws: this variant draws none
    return;
  }
  LRA_CHECK(static_cast<int64_t>(w.size()) == static_cast<int64_t>(m_) * c_.dk,
            "random features: expected {} x {} = {} values, got {}", m_, c_.dk, m_ * c_.dk, w.size());
  upload(w);
  fixed_ = true;
}

void KernelizedGpu::features(const SeqBatch& seq, const AttnIO<float>& io, const Work& w, const Layout& lay) const {
  kernelized::feature_map(fp_, io.q, io.ld_in, false, nullptr, seq.L_pad, w.phq, w.aux, lay, ctx_);
  kernelized::feature_map(fp_, io.k, io.ld_in, true, seq.dev_key_mask, seq.L_pad, w.phk, w.aux, lay, ctx_);
}

RowsArgs KernelizedGpu::rows_args(const RowMat& y, const RowMat& z, const RowMat& w, const float* states,
                                  bool transposed, bool lower) const {
  RowsArgs a;
  a.y = y;
  a.z = z;
  a.w = w;
  a.states = states;
  a.m = m_;
  a.e = e_;
  a.transposed = transposed;
  a.causal = o_.causal;
  a.lower = lower;
  return a;
}

void KernelizedGpu::forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch,
                            const AttnStep& step) {
  check_device_batch(seq, c_.max_len, name_.c_str());
  prepare(step);
  const Layout lay = layout(seq);
  if (lay.rows == 0) return;
  size_t bytes = 0;
  const Work w = carve(scratch, seq.B, lay.rows, &bytes);
  const int64_t me = static_cast<int64_t>(m_) * e_;
  features(seq, io, w, lay);
  kernelized::chunk_states(phi(w.phk), ve(io), w.states, lay, ctx_);
  kernelized::scan_states(w.states, me, o_.causal ? Scan::Forward : Scan::Total, lay, ctx_);
  // [N | D] = Phi_Q T + tril(Phi_Q Phi_K^T) Ve
  RowsArgs nd = rows_args(phi(w.phq), phi(w.phk), ve(io), w.states, false, true);
  nd.out = w.nd;
  nd.out_ld = static_cast<int64_t>(c_.heads) * e_;
  nd.out_hs = e_;
  nd.out_width = e_;
  kernelized::chunk_rows(nd, lay, ctx_);
  kernelized::normalise(io.out, io.ld_out, static_cast<float*>(saved), w.nd, c_.dv, eps_, guard_, lay, ctx_);
}

void KernelizedGpu::backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g,
                             const void* saved, void* scratch, const AttnStep&) {
  check_device_batch(seq, c_.max_len, name_.c_str());
  const Layout lay = layout(seq);
  if (lay.rows == 0) return;
  size_t bytes = 0;
  const Work w = carve(scratch, seq.B, lay.rows, &bytes);
  const int64_t me = static_cast<int64_t>(m_) * e_;
  const int64_t ld_phi = static_cast<int64_t>(c_.heads) * m_;
  features(seq, io, w, lay);
  kernelized::normaliser_grad(w.nd, g.dout, io.out, io.ld_out, static_cast<const float*>(saved), c_.dv, eps_, guard_,
                        lay, ctx_);
  const RowMat G = rows_e(w.nd);
  // U: the states Phi_Q,c^T G_c summed over later chunks (or all rows).
  kernelized::chunk_states(phi(w.phq), G, w.states, lay, ctx_);
  kernelized::scan_states(w.states, me, o_.causal ? Scan::Reverse : Scan::Total, lay, ctx_);
  // dPhi_K = mu (Ve U^T + tril(G Ve^T)^T Phi_Q)
  RowsArgs dk = rows_args(ve(io), G, phi(w.phq), w.states, true, false);
  dk.out = w.dphi;
  dk.out_ld = ld_phi;
  dk.out_hs = m_;
  dk.out_width = m_;
  dk.zero_rows = seq.dev_key_mask;
  kernelized::chunk_rows(dk, lay, ctx_);
  // dV = Phi_K U_N + tril(Phi_Q Phi_K^T)^T dN
  RowsArgs dv = rows_args(phi(w.phk), phi(w.phq), G, w.states, false, false);
  dv.out = g.dv;
  dv.out_ld = io.ld_in;
  dv.out_hs = c_.dv;
  dv.out_width = c_.dv;
  kernelized::chunk_rows(dv, lay, ctx_);
  kernelized::feature_map_backward(fp_, io.k, io.ld_in, true, seq.L_pad, w.phk, w.dphi, g.dk, io.ld_in, w.aux, lay, ctx_);
  // T: the states Phi_K,c^T Ve_c summed over earlier chunks (or all rows).
  kernelized::chunk_states(phi(w.phk), ve(io), w.states, lay, ctx_);
  kernelized::scan_states(w.states, me, o_.causal ? Scan::Forward : Scan::Total, lay, ctx_);
  // dPhi_Q = G T^T + tril(G Ve^T) Phi_K
  RowsArgs dq = rows_args(G, ve(io), phi(w.phk), w.states, true, true);
  dq.out = w.dphi;
  dq.out_ld = ld_phi;
  dq.out_hs = m_;
  dq.out_width = m_;
  kernelized::chunk_rows(dq, lay, ctx_);
  kernelized::feature_map_backward(fp_, io.q, io.ld_in, false, seq.L_pad, w.phq, w.dphi, g.dq, io.ld_in, w.aux, lay,
                             ctx_);
}

}  // namespace

namespace {

bool register_kernelized(const char* name, FeatureMapSpec (*map)(const AttnConfig&)) {
  return register_attention(name, [name, map](const AttnConfig& cfg, const Context& ctx) {
    return std::unique_ptr<Attention<float>>(std::make_unique<KernelizedGpu>(name, map(cfg), cfg, ctx));
  });
}

[[maybe_unused]] const bool registered = register_kernelized("linear", linear_map) &&
                                         register_kernelized("performer", performer_map) &&
                                         register_kernelized("performer-relu", performer_relu_map) &&
                                         register_kernelized("cosformer", cosformer_map);

}  // namespace

}  // namespace lra::cuda
