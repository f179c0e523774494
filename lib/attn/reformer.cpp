// Reformer LSH attention (Kitaev et al. 2020): shared query/key vectors are hashed by random rotations,
// sorted by bucket and cut into chunks; each chunk attends to itself and the chunks before it. Each
// (example, head) is one task. Only the bucket ids and one log-sum-exp per query are kept for the backward,
// which rebuilds the chunks and recomputes the scores (memory O(L n_h) per head).
//
// Per (b, h): n rows, mu = key mask, m = number of visible keys (mu = 1), n_h = hashes, n_b = buckets.
//   keys    k^_j = q_j / |q_j| (norm_keys, the paper; 0 when q_j = 0) or q_j (LRA's code). K is ignored.
//   hash    round r: R_r (dk x n_b/2) ~ N(0, 1) from Rng(step.seed, rotation_stream(layer, r, step.step)),
//           drawn row-major, the same for every example and head; bucket_r(i) = argmax [q_i R_r | -q_i R_r]
//           (the first maximum). The hash is not differentiated.
//   sort    keys: the visible positions in (bucket_r, position) order, pi_r (m entries). A query i (hidden
//           ones too) has rank s_r(i) = #{visible j : (bucket_r(j), j) < (bucket_r(i), i)}: its own index
//           in pi_r when visible, the place it would take otherwise. A hidden key is in no chunk, so it has no
//           influence on any output, not even through the sort.
//   chunks  length c = chunk, or ceil(m / n_b) when chunk = 0 (LRA's code, where n_h n_b chunks cover the
//           n_h sorted copies and chunk_len only pads the input); nc = ceil(m / c) per round. The rounds'
//           chunks are numbered g = r nc + t (G = n_h nc in all), chunk g holding pi_r[t c, min(t c + c, m)).
//           Query i sits in round r's chunk t = min(s_r(i) / c, nc - 1) and sees chunks g - k mod G for
//           k = 0 .. min(chunks_before, G - 1) (wrapping from the first chunk to the last, across rounds,
//           as LRA's look_one_back): E_i, its list of (round, key j) entries (a key may repeat).
//   masks   causal drops entries with j > i; self_mask drops j = i unless E_i keeps no other key (then i
//           attends to itself alone: O_i = v_i). Excluding is what trax's -1e5 logit does up to exp(-1e5).
//   forward S_e = tau q_i . k^_j with tau = dk^-1/2 (dk^1/2 with code_logit_scale, as LRA's code),
//           LSE_i = log sum_{e in E_i} exp S_e, P_e = exp(S_e - LSE_i), O_i = sum_e P_e v_j: one softmax over
//           every round's entries, i.e. each round's softmax output weighted by the softmax of the rounds'
//           LSEs. It is accumulated round by round with an online log-sum-exp, straight into O.
//   backward D_i = dO_i . O_i, dS_e = P_e (dO_i . v_j - D_i), dv_j += P_e dO_i, dq_i += tau dS_e k^_j,
//           dk^_j += tau dS_e q_i, then dq_j += (dk^_j - k^_j (k^_j . dk^_j)) / |q_j| (norm_keys) or dk^_j;
//           a query alone with itself gets dv_i += dO_i. dK = 0.
// A query without any entry (every key hidden, or a hidden query whose chunks are all in its future)
// outputs 0 and gets LSE = +inf, as does a query alone with itself (told apart by its own mask bit).
// The settings, the rotations' draw, the chunk layout and the element-wise expressions are in reformer.h,
// shared with the GPU implementation (lib/cuda/reformer.cu).
#include <omp.h>

#include <cmath>
#include <limits>

#include "attn/attention.h"
#include "attn/reformer.h"
#include "core/arena.h"
#include "core/rng.h"
#include "ops/parallel.h"

namespace lra {

namespace reformer {

namespace {
int integer(const AttnConfig& c, const char* key) {
  const auto& v = c.hp.at(key);
  LRA_CHECK(v.is_number_integer() && v.get<int64_t>() >= std::numeric_limits<int>::min() &&
                v.get<int64_t>() <= std::numeric_limits<int>::max(),
            "reformer: {} must be an integer, got {}", key, v.dump());
  return v.get<int>();
}
}  // namespace

ReformerOptions ReformerOptions::parse(const AttnConfig& c) {
  ReformerOptions s;
  s.hashes = integer(c, "hashes");
  s.buckets = integer(c, "buckets");
  s.causal = c.hp.at("causal").get<bool>();
  s.self_mask = c.hp.at("self_mask").get<bool>();
  s.norm_keys = c.hp.at("norm_keys").get<bool>();
  s.code_logit_scale = c.hp.at("code_logit_scale").get<bool>();
  const int64_t chunk = integer(c, "chunk"), before = integer(c, "chunks_before");
  LRA_CHECK(s.hashes >= 1 && s.hashes <= 255, "reformer: hashes (rounds of hashing) must be in 1..255, got {}",
            s.hashes);
  LRA_CHECK(s.buckets >= 2 && s.buckets <= 65536 && s.buckets % 2 == 0,
            "reformer: buckets must be even and in 2..65536 (a bucket is the argmax of [xR | -xR] over "
            "buckets/2 random rotations), got {}",
            s.buckets);
  LRA_CHECK(chunk >= 0,
            "reformer: chunk must be >= 0 (a chunk length, or 0 for LRA's code: `buckets` chunks per round), "
            "got {}",
            chunk);
  LRA_CHECK(before >= 0, "reformer: chunks_before must be >= 0 (previous chunks each chunk also sees), got {}",
            before);
  LRA_CHECK(c.layer >= 0 && c.layer < 65536, "reformer: layer {} does not fit the rotation stream (16 bits)",
            c.layer);
  s.chunk = static_cast<int>(std::min<int64_t>(chunk, c.max_len));
  s.before = static_cast<int>(std::min<int64_t>(before, static_cast<int64_t>(s.hashes) * c.max_len));
  return s;
}

void draw_rotations(const ReformerOptions& s, int dk, int layer, uint64_t seed, int64_t step, double* rot) {
  const int64_t per_round = static_cast<int64_t>(dk) * (s.buckets / 2);
  for (int r = 0; r < s.hashes; ++r) {
    Rng rng(seed, rotation_stream(layer, r, step));
    for (int64_t e = 0; e < per_round; ++e) rot[r * per_round + e] = rng.normal();
  }
}

}  // namespace reformer

namespace {

using reformer::Chunks;

// Queries scored at once (one score tile of kQueryBlock x entries per thread).
constexpr int kQueryBlock = 128;

template <class T>
class ReformerAttention final : public Attention<T> {
 public:
  explicit ReformerAttention(const AttnConfig& c)
      : c_(c),
        s_(reformer::ReformerOptions::parse(c)),
        hashes_(s_.hashes),
        buckets_(s_.buckets),
        causal_(s_.causal),
        self_mask_(s_.self_mask),
        norm_keys_(s_.norm_keys),
        tau_(s_.code_logit_scale ? std::sqrt(static_cast<T>(c.dk)) : T(1) / std::sqrt(static_cast<T>(c.dk))),
        chunk_(s_.chunk),
        before_(s_.before) {}

  // LSE per (row, head), then the bucket ids per (row, head, round).
  size_t saved_bytes(int, int64_t rows) const override {
    return lse_bytes(rows) + sizeof(int32_t) * rows * c_.heads * hashes_;
  }
  // The rotations (shared), then one Work per thread.
  size_t scratch_bytes(int, int64_t) const override {
    return rotation_bytes() + per_thread_bytes() * c_.threads;
  }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch,
               const AttnStep& step) override {
    T* lse = static_cast<T*>(saved);
    int32_t* bucket = bucket_base(saved, seq);
    check_sequence_lengths(seq, c_.max_len);
    double* rot = static_cast<double*>(scratch);
    reformer::draw_rotations(s_, c_.dk, c_.layer, step.seed, step.step, rot);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      forward_one(seq, io, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse, bucket, rot,
                  thread_scratch(scratch));
    }
  }

  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved,
                void* scratch, const AttnStep&) override {
    const T* lse = static_cast<const T*>(saved);
    const int32_t* bucket = bucket_base(const_cast<void*>(saved), seq);
    check_sequence_lengths(seq, c_.max_len);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      backward_one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse, bucket,
                   thread_scratch(scratch));
    }
  }

 private:
  // One thread's scratch (L = max_len, nq = query block, nk = most entries of a query in one round).
  struct Work {
    T* khat;      // L x dk: the keys k^
    T* inv_norm;  // L: 1 / |q_j| (0 when q_j = 0)
    T* qs;        // nq x dk: tau q of the block's queries
    T* kset;      // nk x dk: the keys of the chunks a chunk sees
    T* vset;      // nk x dv: their values
    T* s;         // nq x nk: scores, then probabilities
    T* dp;        // nq x nk: dP, then dS
    T* o;         // nq x dv: unnormalised block output (forward), gathered dO (backward)
    T* dkhat;     // L x dk
    T* dkset;     // nk x dk
    T* dvset;     // nk x dv
    T* dqb;       // nq x dk
    T* rowm;      // nq: row maxima (forward), D (backward)
    double* x;    // dk: one query in double, for the hash
    double* proj; // buckets/2: its rotations
    int32_t* kperm;   // n_h x L: pi_r
    int32_t* qorder;  // n_h x L: every position in (bucket_r, position) order
    int32_t* qstart;  // n_h x (L + 1): where chunk t's queries start in qorder
    int32_t* srank;   // L: s_r(i)
    int32_t* count;   // 2 x buckets: visible keys and all positions per bucket
    int32_t* kpos;    // nk: the key position of each entry
  };

  // Longest chunk, the query block (queries scored at once, at most kQueryBlock of a chunk) and the most
  // entries of one query in one round.
  int chunk_max() const { return chunk_ > 0 ? chunk_ : (c_.max_len + buckets_ - 1) / buckets_; }
  int query_block() const { return std::min(kQueryBlock, chunk_max()); }
  int entries_max() const {
    return static_cast<int>(std::min<int64_t>(static_cast<int64_t>(before_ + 1) * chunk_max(),
                                              static_cast<int64_t>(hashes_) * c_.max_len));
  }

  // Lays one thread's scratch out from `base` (nullptr: only counts); returns its bytes.
  size_t carve(char* base, Work* w) const {
    ScratchCarver sc(base);
    const size_t L = static_cast<size_t>(c_.max_len), nq = static_cast<size_t>(query_block()),
                 nk = static_cast<size_t>(entries_max()), dk = static_cast<size_t>(c_.dk),
                 dv = static_cast<size_t>(c_.dv), nh = static_cast<size_t>(hashes_);
    sc.take(w->khat, L * dk);
    sc.take(w->inv_norm, L);
    sc.take(w->qs, nq * dk);
    sc.take(w->kset, nk * dk);
    sc.take(w->vset, nk * dv);
    sc.take(w->s, nq * nk);
    sc.take(w->dp, nq * nk);
    sc.take(w->o, nq * dv);
    sc.take(w->dkhat, L * dk);
    sc.take(w->dkset, nk * dk);
    sc.take(w->dvset, nk * dv);
    sc.take(w->dqb, nq * dk);
    sc.take(w->rowm, nq);
    sc.take(w->x, dk);
    sc.take(w->proj, static_cast<size_t>(buckets_ / 2));
    sc.take(w->kperm, nh * L);
    sc.take(w->qorder, nh * L);
    sc.take(w->qstart, nh * (L + 1));
    sc.take(w->srank, L);
    sc.take(w->count, 2 * static_cast<size_t>(buckets_));
    sc.take(w->kpos, nk);
    return sc.used();
  }
  size_t per_thread_bytes() const {
    Work w;
    return carve(nullptr, &w);
  }
  Work thread_scratch(void* scratch) const {
    Work w;
    carve(static_cast<char*>(scratch) + rotation_bytes() + per_thread_bytes() * omp_get_thread_num(), &w);
    return w;
  }
  size_t rotation_bytes() const {
    return align_up(sizeof(double) * hashes_ * c_.dk * (buckets_ / 2), Arena::kAlign);
  }
  size_t lse_bytes(int64_t rows) const { return align_up(sizeof(T) * rows * c_.heads, Arena::kAlign); }
  int32_t* bucket_base(void* saved, const SeqBatch& seq) const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(saved) + lse_bytes(seq.rows()));
  }
  // The bucket ids of (b, h): n_h rows of n, round-major.
  int64_t bucket_offset(const SeqBatch& seq, int b, int h) const {
    return (static_cast<int64_t>(seq.offsets[b]) * c_.heads + static_cast<int64_t>(h) * seq.length(b)) * hashes_;
  }

  // The chunk structure of one (example, head), built from its bucket ids into w.kperm/qorder/qstart.
  Chunks arrange(const uint8_t* mu, const int32_t* bucket, int n, const Work& w) const {
    int m = 0;
    for (int i = 0; i < n; ++i) m += (mu == nullptr || mu[i] != 0) ? 1 : 0;
    const Chunks a = reformer::make_chunks(m, chunk_, buckets_, hashes_, before_);
    if (a.m == 0) return a;
    int32_t* vstart = w.count;             // visible keys per bucket, then where the next one goes in pi_r
    int32_t* astart = w.count + buckets_;  // all positions likewise, in qorder
    const int64_t L = c_.max_len;
    for (int r = 0; r < hashes_; ++r) {
      const int32_t* br = bucket + static_cast<int64_t>(r) * n;
      int32_t* kperm = w.kperm + r * L;
      int32_t* qorder = w.qorder + r * L;
      int32_t* qstart = w.qstart + r * (L + 1);
      std::fill(w.count, w.count + 2 * buckets_, 0);
      for (int i = 0; i < n; ++i) {
        ++astart[br[i]];
        if (mu == nullptr || mu[i] != 0) ++vstart[br[i]];
      }
      for (int k = 0, v = 0, all = 0; k < buckets_; ++k) {
        const int nv = vstart[k], na = astart[k];
        vstart[k] = v;
        astart[k] = all;
        v += nv;
        all += na;
      }
      for (int i = 0; i < n; ++i) {
        const int k = br[i];
        w.srank[i] = vstart[k];
        if (mu == nullptr || mu[i] != 0) kperm[vstart[k]++] = i;
        qorder[astart[k]++] = i;
      }
      // s_r grows along qorder, so each chunk's queries are a contiguous run of it.
      int t = 0;
      qstart[0] = 0;
      for (int f = 0; f < n; ++f) {
        const int tf = reformer::query_chunk(a, w.srank[qorder[f]]);
        while (t < tf) qstart[++t] = f;
      }
      while (t < a.nc) qstart[++t] = n;
    }
    return a;
  }

  // Gathers the entries round r's chunk t sees: key positions into w.kpos, k^ and v rows into kset, vset.
  // Returns their count.
  int gather_keys(const AttnIO<T>& io, int64_t r0, int h, const Chunks& a, int r, int t, const Work& w) const {
    const int g = r * a.nc + t;
    int nk = 0;
    for (int k = 0; k <= a.kb; ++k) {
      const int gg = reformer::chunk_before(a, g, k);
      const int32_t* kperm = w.kperm + static_cast<int64_t>(gg / a.nc) * c_.max_len;
      const int lo = (gg % a.nc) * a.c, hi = std::min(lo + a.c, a.m);
      for (int e = lo; e < hi; ++e) w.kpos[nk++] = kperm[e];
    }
    MapR<T> K(w.kset, nk, c_.dk, Eigen::OuterStride<>(c_.dk));
    MapR<T> V(w.vset, nk, c_.dv, Eigen::OuterStride<>(c_.dv));
    CMapR<T> Kh(w.khat, c_.max_len, c_.dk, Eigen::OuterStride<>(c_.dk));
    for (int e = 0; e < nk; ++e) {
      K.row(e) = Kh.row(w.kpos[e]);
      V.row(e) = CMapR<T>(io.v + (r0 + w.kpos[e]) * io.ld_in + h * c_.dv, 1, c_.dv, Eigen::OuterStride<>(io.ld_in));
    }
    return nk;
  }

  // Sets the scores of the entries that causal (j > i) or self_mask (j = i) drops to `value`: -inf before
  // the exp, then 0 after it (a vectorised exp of -inf may return a denormal).
  void set_dropped(const int32_t* qpos, int nq, int nk, T value, const Work& w) const {
    if (!causal_ && !self_mask_) return;
    T* s = w.s;
    for (int a = 0; a < nq; ++a, s += nk)
      for (int e = 0; e < nk; ++e)
        if (!reformer::entry_kept(w.kpos[e], qpos[a], causal_, self_mask_)) s[e] = value;
  }

  // S <- (tau q of the queries qpos) kset^T (nq x nk), dropped entries at -inf; the scaled queries in w.qs.
  void scores(const AttnIO<T>& io, int64_t r0, int h, const int32_t* qpos, int nq, int nk, const Work& w) const {
    MapR<T> Qs(w.qs, nq, c_.dk, Eigen::OuterStride<>(c_.dk));
    for (int a = 0; a < nq; ++a) {
      const T* q = io.q + (r0 + qpos[a]) * io.ld_in + h * c_.dk;
      Qs.row(a) = CMapR<T>(q, 1, c_.dk, Eigen::OuterStride<>(c_.dk)) * tau_;
    }
    MapR<T> S(w.s, nq, nk, Eigen::OuterStride<>(nk));
    S.noalias() = Qs * CMapR<T>(w.kset, nk, c_.dk, Eigen::OuterStride<>(c_.dk)).transpose();
    set_dropped(qpos, nq, nk, -std::numeric_limits<T>::infinity(), w);
  }

  // The keys k^ and 1 / |q| of the example's n rows.
  void make_keys(const AttnIO<T>& io, int64_t r0, int n, int h, const Work& w) const {
    CMapR<T> Q(io.q + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in));
    MapR<T> Kh(w.khat, n, c_.dk, Eigen::OuterStride<>(c_.dk));
    for (int i = 0; i < n; ++i) {
      const T norm = Q.row(i).norm();
      w.inv_norm[i] = reformer::inv_norm(norm);
      Kh.row(i) = norm_keys_ ? (Q.row(i) * w.inv_norm[i]).eval() : Q.row(i).eval();
    }
  }

  // bucket[r n + i] = argmax [q_i R_r | -q_i R_r], computed in double.
  void hash(const AttnIO<T>& io, int64_t r0, int n, int h, const double* rot, int32_t* bucket, const Work& w) const {
    const int half = buckets_ / 2;
    Eigen::Map<Eigen::RowVectorXd> x(w.x, c_.dk), y(w.proj, half);
    for (int r = 0; r < hashes_; ++r) {
      Eigen::Map<const MatR<double>> R(rot + static_cast<int64_t>(r) * c_.dk * half, c_.dk, half);
      for (int i = 0; i < n; ++i) {
        const T* q = io.q + (r0 + i) * io.ld_in + h * c_.dk;
        for (int f = 0; f < c_.dk; ++f) x[f] = static_cast<double>(q[f]);
        y.noalias() = x * R;
        int best = 0;
        double top = y[0];
        for (int k = 1; k < 2 * half; ++k) {
          const double value = k < half ? y[k] : -y[k - half];
          if (reformer::bucket_beats(value, k, top, best)) {
            top = value;
            best = k;
          }
        }
        bucket[static_cast<int64_t>(r) * n + i] = best;
      }
    }
  }

  void forward_one(const SeqBatch& seq, const AttnIO<T>& io, int b, int h, T* lse, int32_t* bucket_all,
                   const double* rot, const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b);
    if (n == 0) return;
    const uint8_t* mu = seq.key_mask == nullptr ? nullptr : seq.key_mask + r0;
    int32_t* bucket = bucket_all + bucket_offset(seq, b, h);
    T* L = lse + r0 * c_.heads + h;  // stride heads
    const int H = c_.heads;
    const T ninf = -std::numeric_limits<T>::infinity(), pinf = std::numeric_limits<T>::infinity();
    MapR<T> O(io.out + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out));
    O.setZero();
    hash(io, r0, n, h, rot, bucket, w);
    const Chunks a = arrange(mu, bucket, n, w);
    for (int i = 0; i < n; ++i) L[static_cast<int64_t>(i) * H] = a.m == 0 ? pinf : ninf;
    if (a.m == 0) return;
    make_keys(io, r0, n, h, w);
    const int qb = query_block();
    for (int r = 0; r < hashes_; ++r) {
      const int32_t* qorder = w.qorder + static_cast<int64_t>(r) * c_.max_len;
      const int32_t* qstart = w.qstart + static_cast<int64_t>(r) * (c_.max_len + 1);
      for (int t = 0; t < a.nc; ++t) {
        if (qstart[t] == qstart[t + 1]) continue;
        const int nk = gather_keys(io, r0, h, a, r, t, w);
        CMapR<T> V(w.vset, nk, c_.dv, Eigen::OuterStride<>(c_.dv));
        for (int f0 = qstart[t]; f0 < qstart[t + 1]; f0 += qb) {
          const int nq = std::min(qb, qstart[t + 1] - f0);
          const int32_t* qpos = qorder + f0;
          scores(io, r0, h, qpos, nq, nk, w);
          MapR<T> S(w.s, nq, nk, Eigen::OuterStride<>(nk));
          for (int q = 0; q < nq; ++q) {
            const T m = S.row(q).maxCoeff();
            w.rowm[q] = m;
            if (m != ninf) S.row(q) = (S.row(q).array() - m).exp().matrix();
          }
          set_dropped(qpos, nq, nk, T(0), w);
          MapR<T> Ob(w.o, nq, c_.dv, Eigen::OuterStride<>(c_.dv));
          for (int q = 0; q < nq; ++q)
            if (w.rowm[q] == ninf) S.row(q).setZero();
          Ob.noalias() = S * V;
          // Online log-sum-exp over the rounds: O_i <- O_i e^(LSE_i - new) + Ob e^(m - new).
          for (int q = 0; q < nq; ++q) {
            const T m = w.rowm[q];
            if (m == ninf) continue;
            const int i = qpos[q];
            const T lr = m + std::log(S.row(q).sum());
            T& Li = L[static_cast<int64_t>(i) * H];
            const T lnew = reformer::lse_add(Li, lr);
            O.row(i) = O.row(i) * std::exp(Li - lnew) + Ob.row(q) * std::exp(m - lnew);
            Li = lnew;
          }
        }
      }
    }
    for (int i = 0; i < n; ++i) {
      T& Li = L[static_cast<int64_t>(i) * H];
      if (Li != ninf) continue;
      Li = pinf;
      if (alone(mu, i))
        O.row(i) = CMapR<T>(io.v + (r0 + i) * io.ld_in + h * c_.dv, 1, c_.dv, Eigen::OuterStride<>(io.ld_in));
    }
  }

  // A query with no entry left attends to itself alone when self_mask dropped it and its key is visible.
  bool alone(const uint8_t* mu, int i) const { return reformer::alone(self_mask_, mu == nullptr || mu[i] != 0); }

  void backward_one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, int b, int h, const T* lse,
                    const int32_t* bucket_all, const Work& w) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b);
    if (n == 0) return;
    const uint8_t* mu = seq.key_mask == nullptr ? nullptr : seq.key_mask + r0;
    const T* L = lse + r0 * c_.heads + h;
    const int H = c_.heads;
    const T pinf = std::numeric_limits<T>::infinity();
    MapR<T> dQ(g.dq + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in));
    MapR<T> dV(g.dv + r0 * io.ld_in + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_in));
    CMapR<T> dO(g.dout + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out));
    CMapR<T> O(io.out + r0 * io.ld_out + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_out));
    MapR<T>(g.dk + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in)).setZero();
    dQ.setZero();
    dV.setZero();
    const Chunks a = arrange(mu, bucket_all + bucket_offset(seq, b, h), n, w);
    if (a.m == 0) return;
    make_keys(io, r0, n, h, w);
    MapR<T> dKh(w.dkhat, n, c_.dk, Eigen::OuterStride<>(c_.dk));
    dKh.setZero();
    const int qb = query_block();
    for (int r = 0; r < hashes_; ++r) {
      const int32_t* qorder = w.qorder + static_cast<int64_t>(r) * c_.max_len;
      const int32_t* qstart = w.qstart + static_cast<int64_t>(r) * (c_.max_len + 1);
      for (int t = 0; t < a.nc; ++t) {
        if (qstart[t] == qstart[t + 1]) continue;
        const int nk = gather_keys(io, r0, h, a, r, t, w);
        CMapR<T> K(w.kset, nk, c_.dk, Eigen::OuterStride<>(c_.dk));
        CMapR<T> V(w.vset, nk, c_.dv, Eigen::OuterStride<>(c_.dv));
        for (int f0 = qstart[t]; f0 < qstart[t + 1]; f0 += qb) {
          const int nq = std::min(qb, qstart[t + 1] - f0);
          const int32_t* qpos = qorder + f0;
          scores(io, r0, h, qpos, nq, nk, w);
          MapR<T> S(w.s, nq, nk, Eigen::OuterStride<>(nk));
          MapR<T> dP(w.dp, nq, nk, Eigen::OuterStride<>(nk));
          MapR<T> dOb(w.o, nq, c_.dv, Eigen::OuterStride<>(c_.dv));
          for (int q = 0; q < nq; ++q) {
            const int i = qpos[q];
            const T Li = L[static_cast<int64_t>(i) * H];
            if (Li == pinf)
              S.row(q).setZero();
            else
              S.row(q) = (S.row(q).array() - Li).exp().matrix();
            dOb.row(q) = dO.row(i);
            w.rowm[q] = dO.row(i).dot(O.row(i));
          }
          set_dropped(qpos, nq, nk, T(0), w);
          dP.noalias() = dOb * V.transpose();
          for (int q = 0; q < nq; ++q) dP.row(q) = (S.row(q).array() * (dP.row(q).array() - w.rowm[q])).matrix();
          MapR<T> dVs(w.dvset, nk, c_.dv, Eigen::OuterStride<>(c_.dv));
          MapR<T> dKs(w.dkset, nk, c_.dk, Eigen::OuterStride<>(c_.dk));
          MapR<T> dQb(w.dqb, nq, c_.dk, Eigen::OuterStride<>(c_.dk));
          dVs.noalias() = S.transpose() * dOb;
          dKs.noalias() = dP.transpose() * MapR<T>(w.qs, nq, c_.dk, Eigen::OuterStride<>(c_.dk));
          dQb.noalias() = (dP * K) * tau_;
          for (int e = 0; e < nk; ++e) {
            dV.row(w.kpos[e]) += dVs.row(e);
            dKh.row(w.kpos[e]) += dKs.row(e);
          }
          for (int q = 0; q < nq; ++q) dQ.row(qpos[q]) += dQb.row(q);
        }
      }
    }
    CMapR<T> Kh(w.khat, n, c_.dk, Eigen::OuterStride<>(c_.dk));
    for (int j = 0; j < n; ++j) {
      const T dot = norm_keys_ ? Kh.row(j).dot(dKh.row(j)) : T(0);
      for (int f = 0; f < c_.dk; ++f)
        dQ(j, f) += reformer::key_grad(dKh(j, f), Kh(j, f), dot, w.inv_norm[j], norm_keys_);
      if (L[static_cast<int64_t>(j) * H] == pinf && alone(mu, j)) dV.row(j) += dO.row(j);
    }
  }

  AttnConfig c_;
  reformer::ReformerOptions s_;
  int hashes_, buckets_;
  bool causal_, self_mask_, norm_keys_;
  T tau_;
  int chunk_, before_;
};

}  // namespace

AttnInfo reformer_attention_info() {
  AttnInfo info;
  info.name = "reformer";
  info.summary =
      "Reformer LSH attention (Kitaev et al. 2020): shared unit-norm QK hashed by random rotations (redrawn every "
      "step), sorted into chunks that see themselves and the chunks before; the paper's choices by default, LRA's "
      "code with self_mask=false, norm_keys=false, code_logit_scale=true";
  info.complexity =
      "time O(L n_h (chunks_before+1) c d) for chunk length c (L/buckets by default, as LRA's code: O(L^2/buckets)), "
      "memory O(L n_h) saved per head (bucket ids and one LSE per query; scores recomputed in the backward)";
  info.params = {
      {"causal", false,
       "unidirectional: query i attends only keys j <= i of its chunks (which chunks it gets still depends on every "
       "position's hash, as in the paper)"},
      {"hashes", 1, "rounds of hashing n_h (LRA: 1); every round's entries share one softmax"},
      {"buckets", 10, "buckets per round, even (LRA: 10)"},
      {"chunk", 0,
       "chunk length; 0 = LRA's code: each round is cut into `buckets` chunks of ceil(keys/buckets) (its chunk_len "
       "10 only pads the input)"},
      {"chunks_before", 1,
       "previous chunks each chunk also attends, wrapping from the first chunk to the last across rounds (LRA's "
       "code: 1, fixed)"},
      {"self_mask", true, "a query skips itself unless it has no other key (the paper); false = LRA's code"},
      {"norm_keys", true, "keys are the unit-normalised queries (the paper); false = the raw queries (LRA's code)"},
      {"code_logit_scale", false,
       "multiply the logits by sqrt(dk) as LRA's code does (looks like a bug); false = the paper's 1/sqrt(dk)"}};
  return make_attn_info<ReformerAttention>(info);
}

}  // namespace lra
