// Sparse Sinkhorn attention (Tay et al. 2020, "Sparse Sinkhorn Attention"). An example of n rows is cut
// into nb = ceil(n / w) blocks of w rows (the last one partial: its missing rows are hidden keys). A
// learned sort net scores, from each key block's summary, which query block it should be sent to; the
// Sinkhorn operator balances the scores into a soft permutation Pi; each query block then attends, in one
// softmax (the paper's local + sorted attention), to its own w keys and to the w keys of its sorted
// block, a Pi-weighted mix of the key blocks. Each (example, head) is one task; the forward keeps LSE
// per query (per half with combine=sum) and the backward recomputes the sort net, the Sinkhorn
// iterations, the sorted blocks and the w x 2w score tiles.
//
// Per (b, h), tau = dk^-1/2, mu = key mask (0 also for the missing rows of the last block), blocks m, l
// of w rows, K~ = mu K, V~ = mu V. Active blocks A: those with a real key (a block whose keys are all
// hidden takes no part in the sort, and its queries output 0, so a padded example equals its unpadded
// run). nu_j = 1 when some block has a real key at offset j (the sorted slot j can be seen).
//   summaries: s_m = sum_j K~_mj (nb x dk)
//   sort net:  mlp (paper): Z1 = s W1_h + b1_h, A1 = relu(Z1), Z2 = A1 W2_h[:, :nb] + b2_h[:nb],
//              R = relu(Z2);  linear (LRA's code): R = s W[:, :nb] (one W for every head, no bias)
//   Sinkhorn:  X_0 = R[A, A] / temperature; sinkhorn_iters times: rows then columns normalised in log
//              space, X <- X - lse_l(X) (each key block over query blocks), X <- X - lse_m(X) (each query
//              block over key blocks); sort_activation=softmax: only the column step, once.
//              Pi[m, l] = exp(X_last)[m, l] on A x A, 0 elsewhere: sum_m Pi[m, l] = 1.
//   sorted:    K^_l = sum_m Pi[m, l] K~_m, V^_l likewise (w x dk: K^ = Pi^T K~ viewing K~ as nb x w dk)
//   attention: for an active query block l and its query i, S_i = tau q_i [K~_l ; K^_l]^T (2w scores,
//              hidden local keys and unseen sorted slots at -inf), P = softmax(S) (combine=sum, LRA's code:
//              each half normalised on its own, the two outputs added), P' = P z / (1-p) (attention dropout),
//              O_i = P'_i [V~_l ; V^_l]
//   backward:  G = (dO [V~_l ; V^_l]^T) z / (1-p), D_i = sum_j P_ij G_ij (per half with sum),
//              dS = P (G - D), dQ = tau dS [K~_l ; K^_l], dK~_l += tau dS_loc^T Q, dK^_l = tau dS_srt^T Q,
//              dV~_l += P'_loc^T dO, dV^_l = P'_srt^T dO
//              dPi = K~ dK^^T + V~ dV^^T, dK~ += Pi dK^, dV~ += Pi dV^
//              dX_last = dPi[A, A] Pi[A, A]; back through each step with output Y:
//              row step dX = dY - exp(Y) rowsum(dY), column step dX = dY - exp(Y) colsum(dY);
//              dR[A, A] = dX_0 / temperature
//              mlp: dZ2 = dR [Z2 > 0], dW2_h[:, :nb] += A1^T dZ2, db2_h[:nb] += 1^T dZ2,
//              dZ1 = (dZ2 W2_h[:, :nb]^T) [Z1 > 0], dW1_h += s^T dZ1, db1_h += 1^T dZ1, ds = dZ1 W1_h^T
//              linear: dW[:, :nb] += s^T dR, ds = dR W[:, :nb]^T
//              dK~_mj += ds_m;  dK = mu dK~, dV = mu dV~
// The weight gradients are sums over (example, head): each task writes its per-block factors (s, A1, dZ1,
// dZ2 or s, dR) to its own rows of a scratch table, and after the tasks one GEMM per head (per row of W)
// reduces them in a fixed order, so the result is the same bits for any thread count.
// The options and the element-wise maths (the Sinkhorn steps and their backward, the softmax of a part,
// dS, the table and dropout indices) are in sinkhorn.h, shared with the GPU path (lib/cuda/sinkhorn.cu).
#include <omp.h>

#include <cmath>
#include <limits>
#include <string>

#include "attn/attention.h"
#include "attn/row_softmax.h"
#include "attn/sinkhorn.h"
#include "core/arena.h"
#include "core/rng.h"
#include "ops/parallel.h"

namespace lra {

namespace {
int positive_int(const nlohmann::json& v, const char* name, int64_t most) {
  LRA_CHECK(v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= most,
            "sinkhorn: {} must be an integer in [1, {}], got {}", name, most, v.dump());
  return v.get<int>();
}
}  // namespace

SinkhornOptions SinkhornOptions::parse(const AttnConfig& c) {
  SinkhornOptions o;
  o.block = positive_int(c.hp.at("block"), "block", 1 << 16);
  const int64_t blocks = (static_cast<int64_t>(c.max_len) + o.block - 1) / o.block;
  // 0: as many sort-net outputs as the longest example has blocks.
  o.max_blocks = c.hp.at("max_blocks") == 0 ? static_cast<int>(blocks)
                                            : positive_int(c.hp.at("max_blocks"), "max_blocks", 1 << 16);
  o.iters = positive_int(c.hp.at("sinkhorn_iters"), "sinkhorn_iters", 100);
  const auto& temp = c.hp.at("temperature");
  LRA_CHECK(temp.is_number() && temp.get<double>() > 0 && std::isfinite(temp.get<double>()),
            "sinkhorn: temperature must be a positive number (the paper's Sinkhorn temperature, LRA uses 1.0), "
            "got {}",
            temp.dump());
  o.temperature = temp.get<double>();
  const std::string net = c.hp.at("sort_net").get<std::string>();
  LRA_CHECK(net == "mlp" || net == "linear",
            "sinkhorn: sort_net must be \"mlp\" (the paper's two-layer ReLU net, per head) or \"linear\" (LRA's "
            "code: one dk x max_blocks matrix for every head), got \"{}\"",
            net);
  o.mlp = net == "mlp";
  const std::string act = c.hp.at("sort_activation").get<std::string>();
  LRA_CHECK(act == "sinkhorn" || act == "softmax",
            "sinkhorn: sort_activation must be \"sinkhorn\" (the paper) or \"softmax\" (LRA's default: one "
            "normalisation, no balancing), got \"{}\"",
            act);
  o.balance = act == "sinkhorn";
  const std::string combine = c.hp.at("combine").get<std::string>();
  LRA_CHECK(combine == "joint" || combine == "sum",
            "sinkhorn: combine must be \"joint\" (the paper: one softmax over the local and sorted keys) or "
            "\"sum\" (LRA's code: two softmaxes, outputs added), got \"{}\"",
            combine);
  o.parts = combine == "joint" ? 1 : 2;
  LRA_CHECK(blocks <= o.max_blocks,
            "sinkhorn: examples of up to {} rows make {} blocks of block={}, more than max_blocks={} (the sort "
            "net's outputs, one per query block); set max_blocks >= {} or block >= {}",
            c.max_len, blocks, o.block, o.max_blocks, blocks, (c.max_len + o.max_blocks - 1) / o.max_blocks);
  o.blocks = static_cast<int>(blocks);
  return o;
}

// mlp: W1 (dk x dk), b1, W2 (dk x max_blocks), b2 per head; linear: W (dk x max_blocks), LRA's
// xavier_uniform and no bias. Biases start at 0; the weights keep R about the size of the summaries.
std::vector<AttnParamSpec> SinkhornOptions::param_specs(const AttnConfig& c) const {
  const int H = c.heads, d = c.dk, mb = max_blocks;
  if (!mlp) return {AttnParamSpec{"sort_w", {d, mb}, Init::XavierUniform, static_cast<double>(d + mb)}};
  return {AttnParamSpec{"sort_w1", {H, d, d}, Init::XavierUniform, 2.0 * d},
          AttnParamSpec{"sort_b1", {H, d}, Init::Zeros, 0.0},
          AttnParamSpec{"sort_w2", {H, d, mb}, Init::XavierUniform, static_cast<double>(d + mb)},
          AttnParamSpec{"sort_b2", {H, mb}, Init::Zeros, 0.0}};
}

namespace {

template <class T>
using RowVec = Eigen::Matrix<T, 1, Eigen::Dynamic>;

template <class T>
class SinkhornAttention final : public Attention<T> {
 public:
  explicit SinkhornAttention(const AttnConfig& c) : c_(c), o_(SinkhornOptions::parse(c)) {
    blk_ = o_.block;
    mb_ = o_.max_blocks;
    nbm_ = o_.blocks;
    temp_ = static_cast<T>(o_.temperature);
    mlp_ = o_.mlp;
    parts_ = o_.parts;
    steps_ = o_.steps();
    sw_ = o_.slot_width(c.dk);
  }

  // LSE per (row, head) and softmax part.
  size_t saved_bytes(int, int64_t rows) const override { return sizeof(T) * rows * c_.heads * parts_; }
  // Per-thread work, then the table of per-block weight-gradient factors (slot_rows x sw_).
  size_t scratch_bytes(int B, int64_t rows) const override {
    return per_thread_bytes() * c_.threads + sizeof(T) * static_cast<size_t>(slot_rows(B, rows)) * sw_;
  }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch,
               const AttnStep& step) override {
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
    T* slots = slot_base(scratch);
    const int64_t nslots = slot_rows(seq.B, seq.rows());
    std::fill(slots, slots + nslots * sw_, T(0));
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse, slots,
                   thread_scratch(scratch, omp_get_thread_num()), step);
    }
    reduce_weight_grads(slots, nslots / c_.heads);
  }

 private:
  struct Work {
    T *kt, *vt;    // nb w x dk, nb w x dv: K~, V~ (hidden and missing rows zero)
    T *kh, *vh;    // nb w x dk, nb w x dv: the sorted blocks K^, V^
    T *dkt, *dvt;  // gradients of K~, V~
    T *dkh, *dvh;  // gradients of K^, V^
    T *s, *z1, *a1, *dz1;  // nb x dk: summaries, Z1, A1, dZ1 (z1 then holds ds)
    T *z2, *dr;    // nb x nb: Z2 (mlp) or R (linear), then dR
    T *pi, *dpi;   // nb x nb: Pi, dPi
    T* logs;       // (steps + 1) x na x na: X_0 .. X_last
    T* dx;         // na x na
    T* qs;         // w x dk: the scaled query block
    T *sc, *dp;    // w x 2w: scores then P; G then dS
    T* d;          // 2 w: D per (row, part)
    uint32_t* bits;  // 2 w: dropout words of one row
    uint8_t *colok, *vis;  // 2 w: which scores are seen; w: which sorted slots exist
    int* act;      // nb: the active blocks
  };

  // Lays Work out from `base` (nullptr: only measures) and returns its size in bytes.
  size_t layout(char* base, Work& w) const {
    ScratchCarver sc(base);
    const size_t Lb = static_cast<size_t>(nbm_) * blk_, nb = static_cast<size_t>(nbm_), w2 = 2 * blk_;
    const size_t dk = static_cast<size_t>(c_.dk), dv = static_cast<size_t>(c_.dv);
    w.kt = sc.take<T>(Lb * dk);
    w.vt = sc.take<T>(Lb * dv);
    w.kh = sc.take<T>(Lb * dk);
    w.vh = sc.take<T>(Lb * dv);
    w.dkt = sc.take<T>(Lb * dk);
    w.dvt = sc.take<T>(Lb * dv);
    w.dkh = sc.take<T>(Lb * dk);
    w.dvh = sc.take<T>(Lb * dv);
    w.s = sc.take<T>(nb * dk);
    w.z1 = sc.take<T>(nb * dk);
    w.a1 = sc.take<T>(nb * dk);
    w.dz1 = sc.take<T>(nb * dk);
    w.z2 = sc.take<T>(nb * nb);
    w.dr = sc.take<T>(nb * nb);
    w.pi = sc.take<T>(nb * nb);
    w.dpi = sc.take<T>(nb * nb);
    w.logs = sc.take<T>((steps_ + 1) * nb * nb);
    w.dx = sc.take<T>(nb * nb);
    w.qs = sc.take<T>(blk_ * dk);
    w.sc = sc.take<T>(blk_ * w2);
    w.dp = sc.take<T>(blk_ * w2);
    w.d = sc.take<T>(w2);
    w.bits = sc.take<uint32_t>(w2);
    w.colok = sc.take<uint8_t>(w2);
    w.vis = sc.take<uint8_t>(blk_);
    w.act = sc.take<int>(nb);
    return sc.used();
  }

  size_t per_thread_bytes() const {
    Work w;
    return layout(nullptr, w);
  }

  Work thread_scratch(void* scratch, int thread) const {
    Work w;
    layout(static_cast<char*>(scratch) + per_thread_bytes() * thread, w);
    return w;
  }

  // The factor table: block m of example b, head h is row (offsets[b] / w + b + m) * H + h, which never
  // overlaps another example's (sinkhorn_block_base).
  int64_t slot_rows(int B, int64_t rows) const { return sinkhorn_table_blocks(B, rows, blk_) * c_.heads; }
  T* slot_base(void* scratch) const {
    return reinterpret_cast<T*>(static_cast<char*>(scratch) + per_thread_bytes() * c_.threads);
  }
  T* slot(T* slots, const SeqBatch& seq, int b, int h, int m) const {
    return slots + ((sinkhorn_block_base(seq.offsets[b], blk_, b) + m) * c_.heads + h) * sw_;
  }

  // Element index of the dropout draw for query row r, head h, score column 0.

  static bool real_key(const SeqBatch& seq, int64_t r0, int n, int r) {
    return r < n && (seq.key_mask == nullptr || seq.key_mask[r0 + r] != 0);
  }

  int part_begin(int p) const { return o_.part_begin(p); }
  int part_end(int p) const { return o_.part_end(p); }
  bool row_step(int k) const { return o_.row_step(k); }

  // K~, V~, the visible sorted slots, the active blocks, the sort net, the Sinkhorn iterations, Pi and the
  // sorted blocks of example b, head h. Returns the number of active blocks (0: every key is hidden).
  int prepare(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, int nb, const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b), dk = c_.dk, dv = c_.dv;
    std::fill(w.vis, w.vis + blk_, uint8_t(0));
    int na = 0;
    for (int m = 0; m < nb; ++m) {
      bool any = false;
      for (int j = 0; j < blk_; ++j) {
        const int r = m * blk_ + j;
        T* kr = w.kt + static_cast<int64_t>(r) * dk;
        T* vr = w.vt + static_cast<int64_t>(r) * dv;
        if (real_key(seq, r0, n, r)) {
          const T* k = io.k + (r0 + r) * io.ld_in + h * dk;
          const T* v = io.v + (r0 + r) * io.ld_in + h * dv;
          std::copy(k, k + dk, kr);
          std::copy(v, v + dv, vr);
          w.vis[j] = 1;
          any = true;
        } else {
          std::fill(kr, kr + dk, T(0));
          std::fill(vr, vr + dv, T(0));
        }
      }
      if (any) w.act[na++] = m;
    }
    if (na == 0) return 0;
    CMapR<T> Kt(w.kt, nb * blk_, dk, Eigen::OuterStride<>(dk));
    MapR<T> s(w.s, nb, dk, Eigen::OuterStride<>(dk));
    for (int m = 0; m < nb; ++m) s.row(m) = Kt.middleRows(m * blk_, blk_).colwise().sum();
    sort_net(h, nb, w);
    // X_0 = R[A, A] / temperature, then the normalisation steps.
    CMapR<T> Z2(w.z2, nb, nb, Eigen::OuterStride<>(nb));
    MapR<T> X0(w.logs, na, na, Eigen::OuterStride<>(na));
    for (int i = 0; i < na; ++i)
      for (int j = 0; j < na; ++j) {
        const T r = Z2(w.act[i], w.act[j]);
        X0(i, j) = (mlp_ ? std::max(r, T(0)) : r) / temp_;
      }
    for (int k = 1; k <= steps_; ++k) {
      const T* X = w.logs + static_cast<int64_t>(k - 1) * na * na;
      T* Y = w.logs + static_cast<int64_t>(k) * na * na;
      if (row_step(k)) {
        for (int i = 0; i < na; ++i) sinkhorn_normalise(X + i * na, Y + i * na, na, 1);
      } else {
        for (int j = 0; j < na; ++j) sinkhorn_normalise(X + j, Y + j, na, na);
      }
    }
    CMapR<T> Xl(w.logs + static_cast<int64_t>(steps_) * na * na, na, na, Eigen::OuterStride<>(na));
    MapR<T> Pi(w.pi, nb, nb, Eigen::OuterStride<>(nb));
    Pi.setZero();
    for (int i = 0; i < na; ++i)
      for (int j = 0; j < na; ++j) Pi(w.act[i], w.act[j]) = std::exp(Xl(i, j));
    const int fk = blk_ * dk, fv = blk_ * dv;
    MapR<T>(w.kh, nb, fk, Eigen::OuterStride<>(fk)).noalias() =
        Pi.transpose() * CMapR<T>(w.kt, nb, fk, Eigen::OuterStride<>(fk));
    MapR<T>(w.vh, nb, fv, Eigen::OuterStride<>(fv)).noalias() =
        Pi.transpose() * CMapR<T>(w.vt, nb, fv, Eigen::OuterStride<>(fv));
    return na;
  }

  // The sort net's pre-activation scores of all nb blocks into z2 (mlp: also Z1, A1).
  void sort_net(int h, int nb, const Work& w) const {
    const int d = c_.dk;
    CMapR<T> s(w.s, nb, d, Eigen::OuterStride<>(d));
    MapR<T> R(w.z2, nb, nb, Eigen::OuterStride<>(nb));
    if (!mlp_) {
      R.noalias() = s * CMapR<T>(this->param(0), d, mb_, Eigen::OuterStride<>(mb_)).leftCols(nb);
      return;
    }
    CMapR<T> W1(this->param(0) + static_cast<int64_t>(h) * d * d, d, d, Eigen::OuterStride<>(d));
    CMapR<T> W2(this->param(2) + static_cast<int64_t>(h) * d * mb_, d, mb_, Eigen::OuterStride<>(mb_));
    Eigen::Map<const RowVec<T>> b1(this->param(1) + static_cast<int64_t>(h) * d, d);
    Eigen::Map<const RowVec<T>> b2(this->param(3) + static_cast<int64_t>(h) * mb_, nb);
    MapR<T> Z1(w.z1, nb, d, Eigen::OuterStride<>(d)), A1(w.a1, nb, d, Eigen::OuterStride<>(d));
    Z1.noalias() = s * W1;
    Z1.rowwise() += b1;
    A1 = Z1.cwiseMax(T(0));
    R.noalias() = A1 * W2.leftCols(nb);
    R.rowwise() += b2;
  }

  // tau q [K~_l ; K^_l]^T of the bq queries of block l into sc (bq x 2w), hidden keys and unseen sorted
  // slots at -inf (colok says which are seen); the scaled queries into qs.
  void block_scores(const SeqBatch& seq, const AttnIO<T>& io, int64_t r0, int n, int h, int l, int bq,
                    const Work& w) const {
    const int dk = c_.dk, w2 = 2 * blk_;
    const T tau = T(1) / std::sqrt(static_cast<T>(dk));
    CMapR<T> Q(io.q + (r0 + static_cast<int64_t>(l) * blk_) * io.ld_in + h * dk, bq, dk,
               Eigen::OuterStride<>(io.ld_in));
    MapR<T> Qs(w.qs, bq, dk, Eigen::OuterStride<>(dk));
    MapR<T> S(w.sc, bq, w2, Eigen::OuterStride<>(w2));
    CMapR<T> Kl(w.kt + static_cast<int64_t>(l) * blk_ * dk, blk_, dk, Eigen::OuterStride<>(dk));
    CMapR<T> Kh(w.kh + static_cast<int64_t>(l) * blk_ * dk, blk_, dk, Eigen::OuterStride<>(dk));
    Qs = Q * tau;
    S.leftCols(blk_).noalias() = Qs * Kl.transpose();
    S.rightCols(blk_).noalias() = Qs * Kh.transpose();
    for (int j = 0; j < blk_; ++j) {
      w.colok[j] = real_key(seq, r0, n, l * blk_ + j) ? 1 : 0;
      w.colok[blk_ + j] = w.vis[j];
    }
    const T ninf = -std::numeric_limits<T>::infinity();
    for (int j = 0; j < w2; ++j)
      if (w.colok[j] == 0) S.col(j).setConstant(ninf);
  }

  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* lse, const Work& w,
                   const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b), dv = c_.dv, w2 = 2 * blk_;
    if (n == 0) return;
    const int nb = (n + blk_ - 1) / blk_;
    const int na = prepare(seq, io, b, h, nb, w);
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    const T inf = std::numeric_limits<T>::infinity();
    int next = 0;  // the next active block
    for (int l = 0; l < nb; ++l) {
      const int bq = std::min(blk_, n - l * blk_);
      MapR<T> O(io.out + (r0 + static_cast<int64_t>(l) * blk_) * io.ld_out + h * dv, bq, dv,
                Eigen::OuterStride<>(io.ld_out));
      if (next >= na || w.act[next] != l) {
        O.setZero();
        for (int i = 0; i < bq; ++i)
          for (int p = 0; p < parts_; ++p) lse[((r0 + l * blk_ + i) * c_.heads + h) * parts_ + p] = inf;
        continue;
      }
      ++next;
      block_scores(seq, io, r0, n, h, l, bq, w);
      for (int i = 0; i < bq; ++i) {
        const int64_t r = r0 + static_cast<int64_t>(l) * blk_ + i;
        T* row = w.sc + static_cast<int64_t>(i) * w2;
        for (int p = 0; p < parts_; ++p)  // the unseen scores are -inf (block_scores)
          lse[(r * c_.heads + h) * parts_ + p] = sinkhorn_softmax(row + part_begin(p), part_end(p) - part_begin(p));
        if (drop.p > 0.0f) {
          philox_fill(step.seed, step.stream, dropout_element(step.rows, r, h, c_.heads, 2 * blk_), w2, w.bits);
          for (int c = 0; c < w2; ++c) row[c] = dropout_keeps(w.bits[c], drop.thr) ? row[c] * drop.scale : T(0);
        }
      }
      CMapR<T> P(w.sc, bq, w2, Eigen::OuterStride<>(w2));
      CMapR<T> Vl(w.vt + static_cast<int64_t>(l) * blk_ * dv, blk_, dv, Eigen::OuterStride<>(dv));
      CMapR<T> Vh(w.vh + static_cast<int64_t>(l) * blk_ * dv, blk_, dv, Eigen::OuterStride<>(dv));
      O.noalias() = P.leftCols(blk_) * Vl;
      O.noalias() += P.rightCols(blk_) * Vh;
    }
  }

  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h, const T* lse,
                    T* slots, const Work& w, const AttnStep& step) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b), dk = c_.dk, dv = c_.dv, w2 = 2 * blk_;
    if (n == 0) return;
    const int nb = (n + blk_ - 1) / blk_, Lb = nb * blk_;
    const int na = prepare(seq, io, b, h, nb, w);
    MapR<T> dQall(g.dq + r0 * io.ld_in + h * dk, n, dk, Eigen::OuterStride<>(io.ld_in));
    MapR<T> dKout(g.dk + r0 * io.ld_in + h * dk, n, dk, Eigen::OuterStride<>(io.ld_in));
    MapR<T> dVout(g.dv + r0 * io.ld_in + h * dv, n, dv, Eigen::OuterStride<>(io.ld_in));
    if (na == 0) {
      dQall.setZero();
      dKout.setZero();
      dVout.setZero();
      return;
    }
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    const T tau = T(1) / std::sqrt(static_cast<T>(dk));
    MapR<T> dKt(w.dkt, Lb, dk, Eigen::OuterStride<>(dk)), dVt(w.dvt, Lb, dv, Eigen::OuterStride<>(dv));
    MapR<T> dKh(w.dkh, Lb, dk, Eigen::OuterStride<>(dk)), dVh(w.dvh, Lb, dv, Eigen::OuterStride<>(dv));
    dKt.setZero();
    dVt.setZero();
    dKh.setZero();
    dVh.setZero();
    int next = 0;
    for (int l = 0; l < nb; ++l) {
      const int bq = std::min(blk_, n - l * blk_);
      const int64_t i0 = static_cast<int64_t>(l) * blk_;
      MapR<T> dQ(g.dq + (r0 + i0) * io.ld_in + h * dk, bq, dk, Eigen::OuterStride<>(io.ld_in));
      if (next >= na || w.act[next] != l) {
        dQ.setZero();
        continue;
      }
      ++next;
      block_scores(seq, io, r0, n, h, l, bq, w);
      CMapR<T> dO(g.dout + (r0 + i0) * io.ld_out + h * dv, bq, dv, Eigen::OuterStride<>(io.ld_out));
      CMapR<T> Vl(w.vt + i0 * dv, blk_, dv, Eigen::OuterStride<>(dv));
      CMapR<T> Vh(w.vh + i0 * dv, blk_, dv, Eigen::OuterStride<>(dv));
      CMapR<T> Kl(w.kt + i0 * dk, blk_, dk, Eigen::OuterStride<>(dk));
      CMapR<T> Kh(w.kh + i0 * dk, blk_, dk, Eigen::OuterStride<>(dk));
      MapR<T> P(w.sc, bq, w2, Eigen::OuterStride<>(w2));
      MapR<T> G(w.dp, bq, w2, Eigen::OuterStride<>(w2));
      G.leftCols(blk_).noalias() = dO * Vl.transpose();
      G.rightCols(blk_).noalias() = dO * Vh.transpose();
      for (int i = 0; i < bq; ++i) {
        const int64_t r = r0 + i0 + i;
        T* prow = w.sc + static_cast<int64_t>(i) * w2;
        T* grow = w.dp + static_cast<int64_t>(i) * w2;
        for (int p = 0; p < parts_; ++p) {
          const T L = lse[(r * c_.heads + h) * parts_ + p];
          for (int c = part_begin(p); c < part_end(p); ++c) prow[c] = w.colok[c] ? std::exp(prow[c] - L) : T(0);
        }
        if (drop.p > 0.0f) {
          philox_fill(step.seed, step.stream, dropout_element(step.rows, r, h, c_.heads, 2 * blk_), w2, w.bits);
          for (int c = 0; c < w2; ++c) grow[c] *= dropout_keeps(w.bits[c], drop.thr) ? drop.scale : T(0);
        }
        // dS = P (G - D) into G, then P' = P z / (1-p) into P.
        for (int p = 0; p < parts_; ++p)
          sinkhorn_score_grad(prow + part_begin(p), grow + part_begin(p), part_end(p) - part_begin(p));
        if (drop.p > 0.0f)
          for (int c = 0; c < w2; ++c) prow[c] *= dropout_keeps(w.bits[c], drop.thr) ? drop.scale : T(0);
      }
      CMapR<T> Qs(w.qs, bq, dk, Eigen::OuterStride<>(dk));
      dVt.middleRows(i0, blk_).noalias() += P.leftCols(blk_).transpose() * dO;
      dVh.middleRows(i0, blk_).noalias() = P.rightCols(blk_).transpose() * dO;
      dQ.noalias() = G.leftCols(blk_) * Kl * tau;
      dQ.noalias() += G.rightCols(blk_) * Kh * tau;
      dKt.middleRows(i0, blk_).noalias() += G.leftCols(blk_).transpose() * Qs;
      dKh.middleRows(i0, blk_).noalias() = G.rightCols(blk_).transpose() * Qs;
    }
    // Through the sorting: dPi, and the key and value blocks' share of dK^, dV^.
    const int fk = blk_ * dk, fv = blk_ * dv;
    CMapR<T> KtF(w.kt, nb, fk, Eigen::OuterStride<>(fk)), VtF(w.vt, nb, fv, Eigen::OuterStride<>(fv));
    CMapR<T> dKhF(w.dkh, nb, fk, Eigen::OuterStride<>(fk)), dVhF(w.dvh, nb, fv, Eigen::OuterStride<>(fv));
    CMapR<T> Pi(w.pi, nb, nb, Eigen::OuterStride<>(nb));
    MapR<T> dPi(w.dpi, nb, nb, Eigen::OuterStride<>(nb));
    dPi.noalias() = KtF * dKhF.transpose();
    dPi.noalias() += VtF * dVhF.transpose();
    MapR<T>(w.dkt, nb, fk, Eigen::OuterStride<>(fk)).noalias() += Pi * dKhF;
    MapR<T>(w.dvt, nb, fv, Eigen::OuterStride<>(fv)).noalias() += Pi * dVhF;
    // Back through the Sinkhorn steps to dR.
    MapR<T> dX(w.dx, na, na, Eigen::OuterStride<>(na));
    for (int i = 0; i < na; ++i)
      for (int j = 0; j < na; ++j) dX(i, j) = dPi(w.act[i], w.act[j]) * Pi(w.act[i], w.act[j]);
    for (int k = steps_; k >= 1; --k) {
      const T* Y = w.logs + static_cast<int64_t>(k) * na * na;
      if (row_step(k)) {
        for (int i = 0; i < na; ++i) sinkhorn_normalise_backward(w.dx + i * na, Y + i * na, na, 1);
      } else {
        for (int j = 0; j < na; ++j) sinkhorn_normalise_backward(w.dx + j, Y + j, na, na);
      }
    }
    MapR<T> dR(w.dr, nb, nb, Eigen::OuterStride<>(nb));
    dR.setZero();
    for (int i = 0; i < na; ++i)
      for (int j = 0; j < na; ++j) dR(w.act[i], w.act[j]) = dX(i, j) / temp_;
    const T* ds = sort_net_backward(seq, b, h, nb, slots, w);
    for (int m = 0; m < nb; ++m)
      dKt.middleRows(m * blk_, blk_).rowwise() += Eigen::Map<const RowVec<T>>(ds + static_cast<int64_t>(m) * dk, dk);
    for (int r = 0; r < n; ++r) {
      if (real_key(seq, r0, n, r)) {
        dKout.row(r) = dKt.row(r);
        dVout.row(r) = dVt.row(r);
      } else {
        dKout.row(r).setZero();
        dVout.row(r).setZero();
      }
    }
  }

  // dR (nb x nb, zero outside A x A) through the sort net: writes this task's factor rows and returns
  // ds (nb x dk).
  const T* sort_net_backward(const SeqBatch& seq, int b, int h, int nb, T* slots, const Work& w) const {
    const int d = c_.dk;
    CMapR<T> s(w.s, nb, d, Eigen::OuterStride<>(d));
    MapR<T> dR(w.dr, nb, nb, Eigen::OuterStride<>(nb));
    if (!mlp_) {
      MapR<T> ds(w.z1, nb, d, Eigen::OuterStride<>(d));
      ds.noalias() = dR * CMapR<T>(this->param(0), d, mb_, Eigen::OuterStride<>(mb_)).leftCols(nb).transpose();
      for (int m = 0; m < nb; ++m) {
        T* row = slot(slots, seq, b, h, m);
        std::copy(w.s + static_cast<int64_t>(m) * d, w.s + static_cast<int64_t>(m + 1) * d, row);
        std::copy(w.dr + static_cast<int64_t>(m) * nb, w.dr + static_cast<int64_t>(m + 1) * nb, row + d);
      }
      return w.z1;
    }
    CMapR<T> W1(this->param(0) + static_cast<int64_t>(h) * d * d, d, d, Eigen::OuterStride<>(d));
    CMapR<T> W2(this->param(2) + static_cast<int64_t>(h) * d * mb_, d, mb_, Eigen::OuterStride<>(mb_));
    CMapR<T> Z2(w.z2, nb, nb, Eigen::OuterStride<>(nb));
    MapR<T> Z1(w.z1, nb, d, Eigen::OuterStride<>(d)), dZ1(w.dz1, nb, d, Eigen::OuterStride<>(d));
    dR.array() = (Z2.array() > T(0)).select(dR.array(), T(0));
    dZ1.noalias() = dR * W2.leftCols(nb).transpose();
    dZ1.array() = (Z1.array() > T(0)).select(dZ1.array(), T(0));
    Z1.noalias() = dZ1 * W1.transpose();
    for (int m = 0; m < nb; ++m) {
      T* row = slot(slots, seq, b, h, m);
      const int64_t o = static_cast<int64_t>(m) * d;
      std::copy(w.s + o, w.s + o + d, row);
      std::copy(w.a1 + o, w.a1 + o + d, row + d);
      std::copy(w.dz1 + o, w.dz1 + o + d, row + 2 * d);
      std::copy(w.dr + static_cast<int64_t>(m) * nb, w.dr + static_cast<int64_t>(m + 1) * nb, row + 3 * d);
    }
    return w.z1;
  }

  // The weights' gradients += the factor table's sums over its rows (rows of unused slots are zero).
  void reduce_weight_grads(const T* slots, int64_t blocks) const {
    const int d = c_.dk, H = c_.heads;
    if (!mlp_) {
      CMapR<T> S(slots, blocks * H, d, Eigen::OuterStride<>(sw_));
      CMapR<T> dR(slots + d, blocks * H, mb_, Eigen::OuterStride<>(sw_));
      MapR<T> dW(this->param_grad(0), d, mb_, Eigen::OuterStride<>(mb_));
#pragma omp parallel for schedule(static) num_threads(c_.threads)
      for (int i = 0; i < d; ++i) dW.row(i).noalias() += S.col(i).transpose() * dR;
      return;
    }
#pragma omp parallel for schedule(static) num_threads(c_.threads)
    for (int h = 0; h < H; ++h) {
      const T* base = slots + static_cast<int64_t>(h) * sw_;
      const Eigen::OuterStride<> st(static_cast<int64_t>(H) * sw_);
      CMapR<T> S(base, blocks, d, st), A1(base + d, blocks, d, st), dZ1(base + 2 * d, blocks, d, st);
      CMapR<T> dZ2(base + 3 * d, blocks, mb_, st);
      MapR<T>(this->param_grad(0) + static_cast<int64_t>(h) * d * d, d, d, Eigen::OuterStride<>(d)).noalias() +=
          S.transpose() * dZ1;
      Eigen::Map<RowVec<T>>(this->param_grad(1) + static_cast<int64_t>(h) * d, d) += dZ1.colwise().sum();
      MapR<T>(this->param_grad(2) + static_cast<int64_t>(h) * d * mb_, d, mb_, Eigen::OuterStride<>(mb_)).noalias() +=
          A1.transpose() * dZ2;
      Eigen::Map<RowVec<T>>(this->param_grad(3) + static_cast<int64_t>(h) * mb_, mb_) += dZ2.colwise().sum();
    }
  }

  AttnConfig c_;
  SinkhornOptions o_;
  int blk_ = 50, mb_ = 25, nbm_ = 1, steps_ = 2, parts_ = 1, sw_ = 1;
  T temp_ = 1;
  bool mlp_ = true;
};

}  // namespace

AttnInfo sinkhorn_attention_info() {
  AttnInfo info;
  info.name = "sinkhorn";
  info.summary =
      "Sparse Sinkhorn attention (Tay et al. 2020): each block of queries attends, in one softmax, to its own block "
      "and to a soft-sorted block, a Sinkhorn-balanced mix of key blocks ranked by a learned sort net";
  info.complexity =
      "time O(L b d + (L/b)^2 b d) for blocks of b, memory O(L) saved per head (LSE; the sort net, Sinkhorn "
      "steps and scores are recomputed in the backward)";
  info.uses_attention_dropout = true;
  info.no_causal =
      "its sorted blocks mix keys from anywhere in the sequence (the paper's causal form needs causal Sinkhorn "
      "balancing and SortCut, which LRA did not run)";
  info.params = {
      {"block", 50, "rows per block (the last block of an example may be partial); LRA: 50"},
      {"max_blocks", 0,
       "the sort net's outputs, one per query block: every example must have at most this many blocks; 0 = "
       "ceil(max_len / block), what the longest example needs. LRA: 25, fewer than its ListOps and Text inputs "
       "have (its sort net had no effect on the output, see the summary)"},
      {"sort_net", "mlp",
       "the sort net on each key block's sum: \"mlp\" = the paper's relu(W2 relu(W1 s + b1) + b2), per head; "
       "\"linear\" = LRA's code, s W with one dk x max_blocks W for all heads and no bias"},
      {"sort_activation", "sinkhorn",
       "\"sinkhorn\" = the paper's Sinkhorn balancing (rows then columns, in log space); \"softmax\" = LRA's "
       "default, one normalisation (here over key blocks, so each sorted block is a convex mix; LRA normalises "
       "over query blocks, but its einsum then sums both block axes away, leaving the sort net without effect)"},
      {"sinkhorn_iters", 1, "Sinkhorn iterations (a row and a column normalisation each); LRA: 1"},
      {"temperature", 1.0, "the sort scores are divided by it before normalising; LRA: 1.0"},
      {"combine", "joint",
       "\"joint\" = the paper: one softmax over the local and the sorted keys; \"sum\" = LRA's code: a softmax "
       "over each, the two outputs added"},
  };
  return make_attn_info<SinkhornAttention, SinkhornOptions>(info);
}

}  // namespace lra
