// Nystromformer (Xiong et al. 2021) as the authors' LRA code (mlpen/Nystromformer) computes it: softmax
// attention through m segment-mean landmarks, the pseudo-inverse of the landmark kernel by an unrolled
// iteration, plus a depthwise convolution of V over the sequence. Each (example, head) is one task.
//
// Per (example, head), mu = key mask, s = dk^-1/4. The example's length n runs to its last real key: the
// rows after it are padding (output 0, no gradient), so a padded batch equals per-example runs (LRA's
// code pads every sequence to max_len, and its landmark means average the padding zeros in).
//   Qs = s mu Q, Ks = s mu K  (n x dk: hidden rows zeroed, as the code does; they stay in the means)
//   n > m: segment j = rows [floor(j n/m), floor((j+1) n/m)), l_j rows (the code's reshape-and-mean
//          when m divides n); Ql_j, Kl_j = the means of Qs, Ks over segment j  (m x dk)
//     F = softmax(Qs Kl^T) (n x m),  A = softmax(Ql Kl^T) (m x m),
//     Bm = softmax(Ql Ks^T, hidden keys at -inf) (m x n),  W = Bm V (m x dv)
//     Z_0 = A^T / c, c = max_j sum_i A_ij = column j* (per example and head; pinv_init=batch: the max
//           over every such task of the batch)
//     P_k = A Z_k, U1 = 7I - P_k, U2 = 15I - P_k U1, U3 = 13I - P_k U2, Z_{k+1} = 1/4 Z_k U3, k < iters
//     O = F Y + conv(mu V),  Y = Z W,  Z = Z_iters
//   n <= m: O = softmax(Qs Ks^T, hidden keys at -inf) V + conv(mu V)  (the code falls back when m = L)
//   conv(X)_i = sum_t w_ht X_{i+t-p}, p = (kernel-1)/2, zero outside [0, n)  (Conv2d (kernel, 1), groups=H)
// Backward, with the softmax rule dS = P (dP - rowsum(dP P)) for each of F, A, Bm (dSF, dSA, dSB):
//   dY = F^T dO, dF = dO Y^T,  dZ = dY W^T, dW = Z^T dY,  dBm = dW V^T,  dV = Bm^T dW
//   k = iters-1..0, G = dZ_{k+1}:  dU3 = 1/4 Z_k^T G,  dU2 = -P_k^T dU3,
//     dP_k = -dU3 U2^T - dU2 U1^T + P_k^T dU2,  dA += dP_k Z_k^T,  dZ_k = 1/4 G U3^T + A^T dP_k
//   dA += dZ_0^T / c,  dc = -<dZ_0^T, A> / c^2 into column j*: dA_{:,j*} += dc (batch: the sum of every
//     task's dc, into the task that holds the max, after the parallel loop)
//   dQs = dSF Kl,  dKs = dSB^T Ql,  dQl = dSA Kl + dSB Ks,  dKl = dSF^T Qs + dSA^T Ql,
//   segment j's rows get dQl_j / l_j and dKl_j / l_j,  dQ = s mu dQs,  dK = s mu dKs
//   dV += mu conv^T(dO),  dw_ht += sum_i dO_i . (mu V)_{i+t-p} (per task, summed in task order afterwards)
// Saved: W and Z_0 .. Z_iters per (example, head), O(m^2 iters + m dv) whatever L; the backward recomputes
// Qs, Ks, the landmarks, F, A, Bm and the products P_k, U1, U2, U3.
#include <omp.h>

#include <cmath>
#include <limits>

#include "attn/nystromformer.h"
#include "core/arena.h"
#include "ops/parallel.h"

namespace lra {

namespace {

int int_param(const AttnConfig& c, const char* name) {
  const auto& v = c.hp.at(name);
  LRA_CHECK(v.is_number_integer(), "nystromformer: {} must be an integer, got {}", name, v.dump());
  return v.get<int>();
}

}  // namespace

NystromOptions NystromOptions::parse(const AttnConfig& c) {
  NystromOptions o;
  o.landmarks = int_param(c, "landmarks");
  o.pinv_iters = int_param(c, "pinv_iters");
  o.conv_kernel = int_param(c, "conv_kernel");
  const std::string init = c.hp.at("pinv_init").get<std::string>();
  LRA_CHECK(init == "example" || init == "batch",
            "nystromformer: pinv_init must be 'example' (the paper) or 'batch' (LRA's code), got '{}'", init);
  o.batch_init = init == "batch";
  LRA_CHECK(o.landmarks >= 1, "nystromformer: landmarks must be at least 1, got {}", o.landmarks);
  LRA_CHECK(o.pinv_iters >= 0, "nystromformer: pinv_iters must be 0 or more, got {}", o.pinv_iters);
  LRA_CHECK(o.conv_kernel == 0 || (o.conv_kernel > 0 && o.conv_kernel % 2 == 1),
            "nystromformer: conv_kernel must be odd (a centred filter, e.g. 35) or 0 (no convolution), got {}",
            o.conv_kernel);
  return o;
}

std::vector<AttnParamSpec> NystromOptions::param_specs(const AttnConfig& c) const {
  if (conv_kernel == 0) return {};
  return {AttnParamSpec{"conv", {c.heads, conv_kernel}, Init::Uniform, 1.0 / std::sqrt(static_cast<double>(conv_kernel))}};
}

namespace {

template <class T>
class NystromAttention final : public Attention<T> {
 public:
  explicit NystromAttention(const AttnConfig& c) : c_(c) {
    const NystromOptions o = NystromOptions::parse(c);
    m_ = o.landmarks;
    iters_ = o.pinv_iters;
    kernel_ = o.conv_kernel;
    batch_ = o.batch_init;
  }

  size_t saved_bytes(int B, int64_t) const override {
    return header_bytes() + static_cast<size_t>(B) * c_.heads * task_saved_bytes();
  }
  size_t scratch_bytes(int B, int64_t) const override {
    return per_thread_bytes() * c_.threads + shared_bytes(B);
  }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch, const AttnStep&) override {
    check_sequence_lengths(seq, c_.max_len);
    Header* head = static_cast<Header*>(saved);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
    if (batch_) {
      const Shared sh = shared(scratch, seq.B);
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
      for (int64_t t = 0; t < tasks; ++t)
        column_max(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), sh.c + t, sh.col + t,
                   thread_scratch(scratch));
      head->c = -std::numeric_limits<T>::infinity();
      head->task = -1;
      head->col = 0;
      for (int64_t t = 0; t < tasks; ++t)
        if (sh.c[t] > head->c) {
          head->c = sh.c[t];
          head->task = t;
          head->col = sh.col[t];
        }
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t)
      forward_one(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), *head,
                  task_saved(saved, t), thread_scratch(scratch));
  }

  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved, void* scratch,
                const AttnStep&) override {
    check_sequence_lengths(seq, c_.max_len);
    const Header& head = *static_cast<const Header*>(saved);
    const Shared sh = shared(scratch, seq.B);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t)
      backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), head,
                   task_saved(const_cast<void*>(saved), t), sh.c + t, sh.dw + t * kernel_, thread_scratch(scratch));
    if (kernel_ > 0) {
      T* dw = this->param_grad(0);
      for (int h = 0; h < c_.heads; ++h)
        for (int k = 0; k < kernel_; ++k) {
          T acc = T(0);
          for (int b = 0; b < seq.B; ++b) acc += sh.dw[(static_cast<int64_t>(b) * c_.heads + h) * kernel_ + k];
          dw[h * kernel_ + k] += acc;
        }
    }
    if (batch_ && head.task >= 0) {
      T dc = T(0);
      for (int64_t t = 0; t < tasks; ++t) dc += sh.c[t];
      max_backward(seq, io, g, static_cast<int>(head.task / c_.heads), static_cast<int>(head.task % c_.heads),
                   static_cast<int>(head.col), dc, thread_scratch(scratch));
    }
  }

 private:
  // The batch-wide max of pinv_init=batch: its value, the task (b H + h) and column that hold it.
  struct Header {
    T c;
    int64_t task;
    int64_t col;
  };

  // One thread's buffers (L = max_len, mm = m when an example can have more rows than landmarks, else 0).
  struct Work {
    T *qs, *ks, *vm, *dvm;  // L x dk, L x dk, L x dv, L x dv
    T *ql, *kl, *dql, *dkl;  // mm x dk
    T *f, *df;               // L x mm: F, dF then dSF; the fallback's n x n P and dS
    T *bm, *dbm;             // mm x L: Bm, dBm then dSB
    T *a, *da, *p, *u1, *u2, *u3, *gz, *gn, *dp, *t1;  // mm x mm
    T *y, *dy, *dw;          // mm x dv
  };

  // Per-call buffers shared by the tasks: per task, dc (backward) or the column max (forward, batch),
  // the conv weight gradient (kernel values) and the arg-max column.
  struct Shared {
    T* c;
    T* dw;
    int64_t* col;
  };

  int mm() const { return c_.max_len > m_ ? m_ : 0; }
  static size_t bytes(size_t elems) { return align_up(elems * sizeof(T), Arena::kAlign); }
  size_t header_bytes() const { return align_up(sizeof(Header), Arena::kAlign); }
  // W (m x dv) and Z_0 .. Z_iters (m x m each), for a task with more rows than landmarks.
  size_t task_saved_bytes() const {
    const size_t m = static_cast<size_t>(mm());
    return bytes(m * c_.dv + (iters_ + 1) * m * m);
  }
  T* task_saved(void* saved, int64_t t) const {
    return reinterpret_cast<T*>(static_cast<char*>(saved) + header_bytes() + t * task_saved_bytes());
  }

  size_t per_thread_bytes() const {
    const size_t L = static_cast<size_t>(c_.max_len), m = static_cast<size_t>(mm());
    const size_t fb = std::min(L, static_cast<size_t>(m_));  // the longest fallback example
    const size_t lm = std::max(L * m, fb * fb);
    return 2 * bytes(L * c_.dk) + 2 * bytes(L * c_.dv) + 4 * bytes(m * c_.dk) + 2 * bytes(lm) + 2 * bytes(m * L) +
           10 * bytes(m * m) + 3 * bytes(m * c_.dv);
  }
  size_t shared_bytes(int B) const {
    const size_t tasks = static_cast<size_t>(B) * c_.heads;
    return bytes(tasks) + bytes(tasks * kernel_) + align_up(tasks * sizeof(int64_t), Arena::kAlign);
  }

  Work thread_scratch(void* scratch) const {
    ScratchCarver sc(static_cast<char*>(scratch) + per_thread_bytes() * omp_get_thread_num());
    const size_t L = static_cast<size_t>(c_.max_len), m = static_cast<size_t>(mm());
    const size_t fb = std::min(L, static_cast<size_t>(m_));
    const size_t lm = std::max(L * m, fb * fb);
    Work w;
    w.qs = sc.take<T>(L * c_.dk);
    w.ks = sc.take<T>(L * c_.dk);
    w.vm = sc.take<T>(L * c_.dv);
    w.dvm = sc.take<T>(L * c_.dv);
    w.ql = sc.take<T>(m * c_.dk);
    w.kl = sc.take<T>(m * c_.dk);
    w.dql = sc.take<T>(m * c_.dk);
    w.dkl = sc.take<T>(m * c_.dk);
    w.f = sc.take<T>(lm);
    w.df = sc.take<T>(lm);
    w.bm = sc.take<T>(m * L);
    w.dbm = sc.take<T>(m * L);
    for (T** p : {&w.a, &w.da, &w.p, &w.u1, &w.u2, &w.u3, &w.gz, &w.gn, &w.dp, &w.t1}) *p = sc.take<T>(m * m);
    w.y = sc.take<T>(m * c_.dv);
    w.dy = sc.take<T>(m * c_.dv);
    w.dw = sc.take<T>(m * c_.dv);
    return w;
  }

  Shared shared(void* scratch, int B) const {
    char* base = static_cast<char*>(scratch) + per_thread_bytes() * c_.threads;
    const size_t tasks = static_cast<size_t>(B) * c_.heads;
    Shared s;
    s.c = reinterpret_cast<T*>(base);
    s.dw = reinterpret_cast<T*>(base + bytes(tasks));
    s.col = reinterpret_cast<int64_t*>(base + bytes(tasks) + bytes(tasks * kernel_));
    return s;
  }

  static MapR<T> mat(T* p, int rows, int cols) { return MapR<T>(p, rows, cols, Eigen::OuterStride<>(cols)); }

  // Rows up to and including the example's last real key.
  static int real_length(const SeqBatch& seq, int b) {
    int n = seq.length(b);
    if (seq.key_mask == nullptr) return n;
    const uint8_t* mu = seq.key_mask + seq.offsets[b];
    while (n > 0 && mu[n - 1] == 0) --n;
    return n;
  }

  // First row of segment j of an n-row example.
  int segment_start(int j, int n) const { return nystrom_segment_start(j, n, m_); }

  // Qs = s mu Q, Ks = s mu K, Vm = mu V over the example's first n rows.
  void load(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, int n, const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const T s = T(1) / std::sqrt(std::sqrt(static_cast<T>(c_.dk)));
    const Eigen::OuterStride<> ld(io.ld_in);
    MapR<T> Qs = mat(w.qs, n, c_.dk), Ks = mat(w.ks, n, c_.dk), Vm = mat(w.vm, n, c_.dv);
    Qs = CMapR<T>(io.q + r0 * io.ld_in + h * c_.dk, n, c_.dk, ld) * s;
    Ks = CMapR<T>(io.k + r0 * io.ld_in + h * c_.dk, n, c_.dk, ld) * s;
    Vm = CMapR<T>(io.v + r0 * io.ld_in + h * c_.dv, n, c_.dv, ld);
    if (seq.key_mask == nullptr) return;
    const uint8_t* mu = seq.key_mask + r0;
    for (int i = 0; i < n; ++i)
      if (mu[i] == 0) {
        Qs.row(i).setZero();
        Ks.row(i).setZero();
        Vm.row(i).setZero();
      }
  }

  // Ql, Kl: the segment means of Qs, Ks (n > m rows, so no segment is empty).
  void landmarks(int n, const Work& w) const {
    MapR<T> Qs = mat(w.qs, n, c_.dk), Ks = mat(w.ks, n, c_.dk);
    MapR<T> Ql = mat(w.ql, m_, c_.dk), Kl = mat(w.kl, m_, c_.dk);
    for (int j = 0; j < m_; ++j) {
      const int a = segment_start(j, n), len = segment_start(j + 1, n) - a;
      Ql.row(j) = Qs.middleRows(a, len).colwise().sum() / static_cast<T>(len);
      Kl.row(j) = Ks.middleRows(a, len).colwise().sum() / static_cast<T>(len);
    }
  }

  // Row softmax in place; mu (nullptr = none) hides columns. Every row has a visible column.
  static void softmax_rows(MapR<T> S, const uint8_t* mu) {
    if (mu != nullptr)
      for (Eigen::Index j = 0; j < S.cols(); ++j)
        if (mu[j] == 0) S.col(j).setConstant(-std::numeric_limits<T>::infinity());
    for (Eigen::Index i = 0; i < S.rows(); ++i) S.row(i) = (S.row(i).array() - S.row(i).maxCoeff()).exp().matrix();
    // A vectorised exp of -inf may return a denormal: hidden columns get exactly 0.
    if (mu != nullptr)
      for (Eigen::Index j = 0; j < S.cols(); ++j)
        if (mu[j] == 0) S.col(j).setZero();
    for (Eigen::Index i = 0; i < S.rows(); ++i) S.row(i) /= S.row(i).sum();
  }

  // dP <- P (dP - rowsum(dP P)): the gradient of the softmax's logits.
  static void softmax_backward(const MapR<T>& P, MapR<T> dP) {
    for (Eigen::Index i = 0; i < P.rows(); ++i) {
      const T d = P.row(i).dot(dP.row(i));
      dP.row(i) = (P.row(i).array() * (dP.row(i).array() - d)).matrix();
    }
  }

  // A = softmax(Ql Kl^T).
  void kernel_a(const Work& w) const {
    MapR<T> A = mat(w.a, m_, m_);
    A.noalias() = mat(w.ql, m_, c_.dk) * mat(w.kl, m_, c_.dk).transpose();
    softmax_rows(A, nullptr);
  }

  // The largest column sum of A and its column.
  T column_max(const Work& w, int64_t* col) const {
    Eigen::Index j = 0;
    const T c = mat(w.a, m_, m_).colwise().sum().maxCoeff(&j);
    *col = j;
    return c;
  }

  // pinv_init=batch, first pass: the task's largest column sum of A (-inf when it has no landmarks).
  void column_max(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* c, int64_t* col, const Work& w) const {
    const int n = real_length(seq, b);
    *c = -std::numeric_limits<T>::infinity();
    *col = 0;
    if (n <= m_) return;
    load(seq, io, b, h, n, w);
    landmarks(n, w);
    kernel_a(w);
    *c = column_max(w, col);
  }

  // P = A Z, U1 = 7I - P, U2 = 15I - P U1, U3 = 13I - P U2.
  void products(const T* z, const Work& w) const {
    MapR<T> P = mat(w.p, m_, m_), U1 = mat(w.u1, m_, m_), U2 = mat(w.u2, m_, m_), U3 = mat(w.u3, m_, m_);
    P.noalias() = mat(w.a, m_, m_) * mat(const_cast<T*>(z), m_, m_);
    U1 = -P;
    U1.diagonal().array() += T(kPinvShift1);
    U2.noalias() = -P * U1;
    U2.diagonal().array() += T(kPinvShift2);
    U3.noalias() = -P * U2;
    U3.diagonal().array() += T(kPinvShift3);
  }

  // out += conv(Vm) over n rows.
  void conv_forward(MapR<T>& O, const MapR<T>& Vm, int h, int n) const {
    const T* wt = this->param(0) + static_cast<int64_t>(h) * kernel_;
    for (int t = 0; t < kernel_; ++t) {
      const int off = nystrom_tap_offset(t, kernel_);
      int i0 = 0, i1 = 0;
      nystrom_tap_rows(off, n, &i0, &i1);
      if (i1 > i0) O.middleRows(i0, i1 - i0) += wt[t] * Vm.middleRows(i0 + off, i1 - i0);
    }
  }

  // dVm += conv^T(dO), dw_t = sum_i dO_i . Vm_{i+t-p}.
  void conv_backward(const CMapR<T>& dO, const MapR<T>& Vm, MapR<T>& dVm, int h, int n, T* dw) const {
    const T* wt = this->param(0) + static_cast<int64_t>(h) * kernel_;
    for (int t = 0; t < kernel_; ++t) {
      const int off = nystrom_tap_offset(t, kernel_);
      int i0 = 0, i1 = 0;
      nystrom_tap_rows(off, n, &i0, &i1);
      dw[t] = T(0);
      if (i1 <= i0) continue;
      dVm.middleRows(i0 + off, i1 - i0) += wt[t] * dO.middleRows(i0, i1 - i0);
      dw[t] = dO.middleRows(i0, i1 - i0).cwiseProduct(Vm.middleRows(i0 + off, i1 - i0)).sum();
    }
  }

  // dX rows of segment j += scale dXl_j / l_j, on rows with mu (nullptr = every row).
  void spread(MapR<T>& dX, const MapR<T>& dXl, int n, T scale, const uint8_t* mu) const {
    for (int j = 0; j < m_; ++j) {
      const int a = segment_start(j, n), e = segment_start(j + 1, n);
      const T f = scale / static_cast<T>(e - a);
      for (int i = a; i < e; ++i)
        if (mu == nullptr || mu[i] != 0) dX.row(i) += f * dXl.row(j);
    }
  }

  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, const Header& head, T* sv,
                   const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int len = seq.length(b), n = real_length(seq, b);
    MapR<T> Oall(io.out + r0 * io.ld_out + h * c_.dv, len, c_.dv, Eigen::OuterStride<>(io.ld_out));
    Oall.bottomRows(len - n).setZero();
    if (n == 0) return;
    MapR<T> O(io.out + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out));
    const uint8_t* mu = seq.key_mask == nullptr ? nullptr : seq.key_mask + r0;
    load(seq, io, b, h, n, w);
    MapR<T> Qs = mat(w.qs, n, c_.dk), Ks = mat(w.ks, n, c_.dk), Vm = mat(w.vm, n, c_.dv);
    if (n <= m_) {
      MapR<T> S = mat(w.f, n, n);
      S.noalias() = Qs * Ks.transpose();
      softmax_rows(S, mu);
      O.noalias() = S * Vm;
    } else {
      landmarks(n, w);
      MapR<T> Ql = mat(w.ql, m_, c_.dk), Kl = mat(w.kl, m_, c_.dk);
      MapR<T> F = mat(w.f, n, m_), Bm = mat(w.bm, m_, n), A = mat(w.a, m_, m_);
      F.noalias() = Qs * Kl.transpose();
      softmax_rows(F, nullptr);
      kernel_a(w);
      Bm.noalias() = Ql * Ks.transpose();
      softmax_rows(Bm, mu);
      MapR<T> W = mat(sv, m_, c_.dv);
      W.noalias() = Bm * Vm;
      int64_t col = 0;
      const T c = batch_ ? head.c : column_max(w, &col);
      T* z = sv + static_cast<int64_t>(m_) * c_.dv;
      const int64_t mm2 = static_cast<int64_t>(m_) * m_;
      mat(z, m_, m_) = A.transpose() / c;
      for (int k = 0; k < iters_; ++k) {
        products(z + k * mm2, w);
        MapR<T> Zn = mat(z + (k + 1) * mm2, m_, m_);
        Zn.noalias() = mat(z + k * mm2, m_, m_) * mat(w.u3, m_, m_);
        Zn *= T(kPinvScale);
      }
      MapR<T> Y = mat(w.y, m_, c_.dv);
      Y.noalias() = mat(z + iters_ * mm2, m_, m_) * W;
      O.noalias() = F * Y;
    }
    if (kernel_ > 0) conv_forward(O, Vm, h, n);
  }

  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h,
                    const Header& head, const T* sv, T* dc_out, T* dw_out, const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int len = seq.length(b), n = real_length(seq, b);
    const Eigen::OuterStride<> ld(io.ld_in);
    MapR<T> dQall(g.dq + r0 * io.ld_in + h * c_.dk, len, c_.dk, ld);
    MapR<T> dKall(g.dk + r0 * io.ld_in + h * c_.dk, len, c_.dk, ld);
    MapR<T> dVall(g.dv + r0 * io.ld_in + h * c_.dv, len, c_.dv, ld);
    dQall.bottomRows(len - n).setZero();
    dKall.bottomRows(len - n).setZero();
    dVall.bottomRows(len - n).setZero();
    *dc_out = T(0);
    for (int t = 0; t < kernel_; ++t) dw_out[t] = T(0);
    if (n == 0) return;
    MapR<T> dQ(g.dq + r0 * io.ld_in + h * c_.dk, n, c_.dk, ld);
    MapR<T> dK(g.dk + r0 * io.ld_in + h * c_.dk, n, c_.dk, ld);
    MapR<T> dV(g.dv + r0 * io.ld_in + h * c_.dv, n, c_.dv, ld);
    CMapR<T> dO(g.dout + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out));
    const uint8_t* mu = seq.key_mask == nullptr ? nullptr : seq.key_mask + r0;
    load(seq, io, b, h, n, w);
    MapR<T> Qs = mat(w.qs, n, c_.dk), Ks = mat(w.ks, n, c_.dk), Vm = mat(w.vm, n, c_.dv);
    MapR<T> dVm = mat(w.dvm, n, c_.dv);
    if (n <= m_) {
      MapR<T> P = mat(w.f, n, n), dS = mat(w.df, n, n);
      P.noalias() = Qs * Ks.transpose();
      softmax_rows(P, mu);
      dS.noalias() = dO * Vm.transpose();
      softmax_backward(P, dS);
      dQ.noalias() = dS * Ks;
      dK.noalias() = dS.transpose() * Qs;
      dVm.noalias() = P.transpose() * dO;
    } else {
      landmarks(n, w);
      MapR<T> Ql = mat(w.ql, m_, c_.dk), Kl = mat(w.kl, m_, c_.dk);
      MapR<T> dQl = mat(w.dql, m_, c_.dk), dKl = mat(w.dkl, m_, c_.dk);
      MapR<T> F = mat(w.f, n, m_), dF = mat(w.df, n, m_), Bm = mat(w.bm, m_, n), dBm = mat(w.dbm, m_, n);
      MapR<T> A = mat(w.a, m_, m_), dA = mat(w.da, m_, m_);
      F.noalias() = Qs * Kl.transpose();
      softmax_rows(F, nullptr);
      kernel_a(w);
      Bm.noalias() = Ql * Ks.transpose();
      softmax_rows(Bm, mu);
      const int64_t mm2 = static_cast<int64_t>(m_) * m_;
      const T* z = sv + static_cast<int64_t>(m_) * c_.dv;
      auto Zk = [&](int k) { return mat(const_cast<T*>(z) + k * mm2, m_, m_); };
      MapR<T> W = mat(const_cast<T*>(sv), m_, c_.dv);
      MapR<T> Y = mat(w.y, m_, c_.dv), dY = mat(w.dy, m_, c_.dv), dW = mat(w.dw, m_, c_.dv);
      Y.noalias() = Zk(iters_) * W;
      dY.noalias() = F.transpose() * dO;
      dF.noalias() = dO * Y.transpose();
      dW.noalias() = Zk(iters_).transpose() * dY;
      dBm.noalias() = dW * Vm.transpose();
      dVm.noalias() = Bm.transpose() * dW;
      // The iteration, last step first: G = dZ_{k+1} in gz, dZ_k built in gn, then swapped.
      T *gz = w.gz, *gn = w.gn;
      mat(gz, m_, m_).noalias() = dY * W.transpose();
      dA.setZero();
      MapR<T> P = mat(w.p, m_, m_), U1 = mat(w.u1, m_, m_), U2 = mat(w.u2, m_, m_), U3 = mat(w.u3, m_, m_);
      MapR<T> dP = mat(w.dp, m_, m_), T1 = mat(w.t1, m_, m_);
      for (int k = iters_ - 1; k >= 0; --k) {
        MapR<T> G = mat(gz, m_, m_), Gn = mat(gn, m_, m_);
        products(z + k * mm2, w);
        T1.noalias() = Zk(k).transpose() * G;  // 4 dU3
        T1 *= T(kPinvScale);
        Gn.noalias() = G * U3.transpose();
        Gn *= T(kPinvScale);
        dP.noalias() = -T1 * U2.transpose();
        U3.noalias() = -P.transpose() * T1;  // dU2 (U3 is no longer needed)
        dP.noalias() -= U3 * U1.transpose();
        dP.noalias() += P.transpose() * U3;
        dA.noalias() += dP * Zk(k).transpose();
        Gn.noalias() += A.transpose() * dP;
        std::swap(gz, gn);
      }
      int64_t col = 0;
      const T c = batch_ ? head.c : column_max(w, &col);
      MapR<T> G0 = mat(gz, m_, m_);
      dA += G0.transpose() / c;
      const T dc = -G0.transpose().cwiseProduct(A).sum() / (c * c);
      if (batch_)
        *dc_out = dc;
      else
        dA.col(col).array() += dc;
      softmax_backward(F, dF);
      softmax_backward(A, dA);
      softmax_backward(Bm, dBm);
      dQ.noalias() = dF * Kl;
      dK.noalias() = dBm.transpose() * Ql;
      dQl.noalias() = dA * Kl;
      dQl.noalias() += dBm * Ks;
      dKl.noalias() = dF.transpose() * Qs;
      dKl.noalias() += dA.transpose() * Ql;
      spread(dQ, dQl, n, T(1), nullptr);
      spread(dK, dKl, n, T(1), nullptr);
    }
    if (kernel_ > 0) conv_backward(dO, Vm, dVm, h, n, dw_out);
    const T s = T(1) / std::sqrt(std::sqrt(static_cast<T>(c_.dk)));
    dQ *= s;
    dK *= s;
    dV = dVm;
    if (mu != nullptr)
      for (int i = 0; i < n; ++i)
        if (mu[i] == 0) {
          dQ.row(i).setZero();
          dK.row(i).setZero();
          dV.row(i).setZero();
        }
  }

  // pinv_init=batch, after the parallel backward: the batch's dc into column `col` of A of task (b, h),
  // through its softmax and landmarks into dQ and dK (added).
  void max_backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h, int col, T dc,
                    const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int n = real_length(seq, b);
    const uint8_t* mu = seq.key_mask == nullptr ? nullptr : seq.key_mask + r0;
    load(seq, io, b, h, n, w);
    landmarks(n, w);
    kernel_a(w);
    MapR<T> A = mat(w.a, m_, m_), dA = mat(w.da, m_, m_);
    dA.setZero();
    dA.col(col).setConstant(dc);
    softmax_backward(A, dA);
    MapR<T> dQl = mat(w.dql, m_, c_.dk), dKl = mat(w.dkl, m_, c_.dk);
    dQl.noalias() = dA * mat(w.kl, m_, c_.dk);
    dKl.noalias() = dA.transpose() * mat(w.ql, m_, c_.dk);
    const T s = T(1) / std::sqrt(std::sqrt(static_cast<T>(c_.dk)));
    const Eigen::OuterStride<> ld(io.ld_in);
    MapR<T> dQ(g.dq + r0 * io.ld_in + h * c_.dk, n, c_.dk, ld);
    MapR<T> dK(g.dk + r0 * io.ld_in + h * c_.dk, n, c_.dk, ld);
    spread(dQ, dQl, n, s, mu);
    spread(dK, dKl, n, s, mu);
  }

  AttnConfig c_;
  int m_ = 1, iters_ = 0, kernel_ = 0;
  bool batch_ = false;
};

}  // namespace

AttnInfo nystromformer_attention_info() {
  AttnInfo info;
  info.name = "nystromformer";
  info.summary =
      "Nystromformer (Xiong et al. 2021) as in the authors' LRA code: softmax through m segment-mean landmarks, "
      "pinv of the landmark kernel by iteration, plus a depthwise conv of V; segments split the example's real "
      "length (up to its last real key; the code splits the padded max_len, averaging padding zeros in), exact "
      "softmax (+ conv) when n <= landmarks (the code: when m = L); no attention weights to drop";
  info.complexity =
      "time O(L m d + m^3 pinv_iters), memory O(L m) scratch per thread and O(m^2 pinv_iters) saved per example "
      "and head, m = landmarks";
  info.no_causal = "its landmarks average over the whole sequence, so every output depends on future tokens";
  info.params = {
      {"landmarks", 64,
       "m, landmarks per head: segment j holds rows [floor(j n/m), floor((j+1) n/m)) of the example's n real rows; "
       "n <= m is exact softmax attention (+ conv)"},
      {"pinv_iters", 6, "iterations Z <- Z (13I - AZ (15I - AZ (7I - AZ))) / 4 approximating pinv(A)"},
      {"conv_kernel", 35,
       "taps of the depthwise convolution of V over the sequence, one filter per head (learned weight 'conv', "
       "heads x kernel, zero padding, no bias); odd, or 0 for none"},
      {"pinv_init", "example",
       "Z_0 = A^T / (largest column sum of A): 'example' takes it per example and head (the paper), 'batch' over "
       "the whole batch (LRA's code, init_option 'original'; couples the examples of a batch)"}};
  return make_attn_info<NystromAttention, NystromOptions>(info);
}

}  // namespace lra
