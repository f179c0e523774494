#include "attn/block_sparse.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "attn/row_softmax.h"
#include "core/arena.h"
#include "core/rng.h"
#include "ops/parallel.h"

namespace lra {

void SparsePattern::key_spans(int n, int h, int qb, uint64_t seed, std::vector<KeySpan>& out) const {
  thread_local std::vector<int> work;
  work.resize(static_cast<size_t>(pattern_work_ints(spec_, n)));
  out.resize(static_cast<size_t>(pattern_max_spans(spec_, n)));
  out.resize(static_cast<size_t>(pattern_key_spans(spec_, n, h, qb, seed, out.data(), work.data())));
}

bool SparsePattern::allowed(int n, int h, int q, int k, uint64_t seed) const {
  for (int qb = 0; qb < num_query_blocks(n); ++qb) {
    const RowRange r = query_block(n, qb);
    if (q < r.begin || q >= r.end) continue;
    std::vector<KeySpan> spans;
    key_spans(n, h, qb, seed, spans);
    for (const auto& s : spans)
      if (k >= s.begin && k < s.end && (s.radius < 0 || std::abs(q - k) <= s.radius)) return true;
    return false;
  }
  return false;
}

namespace {
PatternSpec local_spec(int block) {
  LRA_CHECK(block >= 1, "local attention needs block >= 1, got {}", block);
  PatternSpec p;
  p.kind = PatternKind::Local;
  p.block = block;
  return p;
}

PatternSpec fixed_spec(int block, int summary, bool causal) {
  LRA_CHECK(block >= 1, "sparse attention needs block >= 1, got {}", block);
  LRA_CHECK(summary >= 1 && summary <= block, "sparse attention needs 1 <= summary <= block ({}), got {}", block,
            summary);
  PatternSpec p;
  p.kind = PatternKind::Fixed;
  p.block = block;
  p.summary = summary;
  p.causal = causal;
  return p;
}

PatternSpec longformer_spec(int window, std::vector<int> global) {
  LRA_CHECK(window >= 2, "longformer needs window >= 2 (keys within window/2 on each side), got {}", window);
  std::sort(global.begin(), global.end());
  global.erase(std::unique(global.begin(), global.end()), global.end());
  for (int g : global) LRA_CHECK(g >= 0, "longformer global positions must be >= 0, got {}", g);
  LRA_CHECK(global.size() <= static_cast<size_t>(PatternSpec::kMaxGlobal),
            "longformer takes at most {} global positions, got {}; LRA's setting is [0] (the CLS position)",
            PatternSpec::kMaxGlobal, global.size());
  PatternSpec p;
  p.kind = PatternKind::Longformer;
  p.radius = window / 2;
  p.n_global = static_cast<int>(global.size());
  std::copy(global.begin(), global.end(), p.global);
  return p;
}

PatternSpec bigbird_spec(int block, int random, int random_limit, int layer) {
  LRA_CHECK(block >= 1, "bigbird needs block >= 1, got {}", block);
  LRA_CHECK(random >= 0, "bigbird needs random >= 0 blocks, got {}", random);
  LRA_CHECK(random_limit >= 0, "bigbird needs random_limit >= 0 (0 = no limit), got {}", random_limit);
  PatternSpec p;
  p.kind = PatternKind::BigBird;
  p.block = block;
  p.random = random;
  p.random_limit = random_limit;
  p.layer = layer;
  return p;
}
}  // namespace

LocalPattern::LocalPattern(int block) : SparsePattern(local_spec(block)) {}

FixedPattern::FixedPattern(int block, int summary, bool causal) : SparsePattern(fixed_spec(block, summary, causal)) {}

LongformerPattern::LongformerPattern(int window, std::vector<int> global)
    : SparsePattern(longformer_spec(window, std::move(global))) {}

BigBirdPattern::BigBirdPattern(int block, int random, int random_limit, int layer)
    : SparsePattern(bigbird_spec(block, random, random_limit, layer)) {}

std::vector<int> BigBirdPattern::key_blocks(int n, int h, int qb, uint64_t seed) const {
  std::vector<int> work(static_cast<size_t>(pattern_work_ints(spec(), n)));
  bigbird_mark_blocks(spec(), n, h, qb, seed, work.data());
  std::vector<int> blocks;
  for (int j = 0; j < ceil_div(n, spec().block); ++j)
    if (work[static_cast<size_t>(j)]) blocks.push_back(j);
  return blocks;
}

// ---- the engine ----

namespace {

template <class T>
class BlockSparseAttention final : public Attention<T> {
 public:
  BlockSparseAttention(const AttnConfig& c, std::shared_ptr<const SparsePattern> p)
      : c_(c), p_(std::move(p)), causal_(BlockSparseOptions::parse(c).causal), rows_(p_->max_block_rows()) {}

  // LSE per (row, head).
  size_t saved_bytes(int, int64_t rows) const override { return sizeof(T) * rows * c_.heads; }
  size_t scratch_bytes(int, int64_t) const override { return per_thread_bytes() * c_.threads; }

  void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch,
               const AttnStep& step) override {
    run(seq, io, nullptr, static_cast<T*>(saved), nullptr, scratch, step);
  }

  void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved,
                void* scratch, const AttnStep& step) override {
    run(seq, io, &g, nullptr, static_cast<const T*>(saved), scratch, step);
  }

 private:
  struct Work {
    T *q, *s, *dp, *k, *v, *gk, *gv, *dk, *dv, *d;
    uint8_t* hidden;  // per gathered key: 1 = hidden by the key mask
    int* pos;         // per gathered key: its position in the example
    uint32_t* bits;
  };

  size_t per_thread_bytes() const {
    const size_t L = static_cast<size_t>(c_.max_len), R = static_cast<size_t>(rows_);
    const size_t n = R * c_.dk + 2 * R * L + 3 * L * c_.dk + 3 * L * c_.dv + R;
    return align_up(n * sizeof(T) + L * (sizeof(uint8_t) + sizeof(int) + sizeof(uint32_t)) + 14 * Arena::kAlign,
                    Arena::kAlign);
  }

  Work thread_scratch(void* scratch) const {
    ScratchCarver sc(static_cast<char*>(scratch) + per_thread_bytes() * omp_get_thread_num());
    const size_t L = static_cast<size_t>(c_.max_len), R = static_cast<size_t>(rows_);
    Work w;
    w.q = sc.take<T>(R * c_.dk);
    w.s = sc.take<T>(R * L);
    w.dp = sc.take<T>(R * L);
    w.k = sc.take<T>(L * c_.dk);
    w.v = sc.take<T>(L * c_.dv);
    w.gk = sc.take<T>(L * c_.dk);
    w.gv = sc.take<T>(L * c_.dv);
    w.dk = sc.take<T>(L * c_.dk);
    w.dv = sc.take<T>(L * c_.dv);
    w.d = sc.take<T>(R);
    w.hidden = sc.take<uint8_t>(L);
    w.pos = sc.take<int>(L);
    w.bits = sc.take<uint32_t>(L);
    return w;
  }

  // A span as gathered: keys [begin, end) of the example sit at gathered columns g0 .. g0 + end - begin.
  struct Gathered {
    int begin, end, radius, g0;
  };

  // The forward (g == nullptr) writes lse_out; the backward reads lse_in.
  void run(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>* g, T* lse_out, const T* lse_in,
           void* scratch, const AttnStep& step) const {
    check_sequence_lengths(seq, c_.max_len);
    const int64_t tasks = static_cast<int64_t>(seq.B) * c_.heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(c_.threads)
    for (int64_t t = 0; t < tasks; ++t) {
      thread_local std::vector<KeySpan> spans;
      thread_local std::vector<Gathered> gathered;
      one(seq, io, g, static_cast<int>(t / c_.heads), static_cast<int>(t % c_.heads), lse_out, lse_in,
          thread_scratch(scratch), step, spans, gathered);
    }
  }

  // Gathers the keys and values query block [r.begin, r.end) sees; returns their count.
  int gather(const SeqBatch& seq, const AttnIO<T>& io, int64_t r0, int h, RowRange r,
             const std::vector<KeySpan>& spans, std::vector<Gathered>& gathered, const Work& w) const {
    gathered.clear();
    int nk = 0;
    for (const auto& sp : spans) {
      const int end = causal_ ? std::min(sp.end, r.end) : sp.end;  // keys after the block's last row: hidden
      if (end <= sp.begin) continue;
      gathered.push_back({sp.begin, end, sp.radius, nk});
      for (int k = sp.begin; k < end; ++k, ++nk) {
        const int64_t row = r0 + k;
        std::copy_n(io.k + row * io.ld_in + h * c_.dk, c_.dk, w.k + static_cast<int64_t>(nk) * c_.dk);
        std::copy_n(io.v + row * io.ld_in + h * c_.dv, c_.dv, w.v + static_cast<int64_t>(nk) * c_.dv);
        w.hidden[nk] = seq.key_mask != nullptr && seq.key_mask[row] == 0;
        w.pos[nk] = k;
      }
    }
    return nk;
  }

  // Sets the entries of S (br x nk) that query rows may not see to `value`: hidden keys, keys outside a
  // span's band, and (causal) keys after the query.
  void hide(MapR<T>& S, RowRange r, const std::vector<Gathered>& gathered, int nk, const Work& w, T value) const {
    const int br = r.end - r.begin;
    for (int j = 0; j < nk; ++j)
      if (w.hidden[j]) S.col(j).setConstant(value);
    for (const auto& gs : gathered) {
      const bool band = gs.radius >= 0, late = causal_ && gs.end - 1 > r.begin;
      if (!band && !late) continue;
      for (int i = 0; i < br; ++i) {
        const int q = r.begin + i;
        int lo, hi;  // visible keys of this span: [lo, hi)
        span_visible(KeySpan{gs.begin, gs.end, gs.radius}, q, causal_, &lo, &hi);
        T* row = S.data() + static_cast<int64_t>(i) * S.outerStride() + gs.g0;
        std::fill(row, row + (lo - gs.begin), value);
        std::fill(row + (hi - gs.begin), row + (gs.end - gs.begin), value);
      }
    }
  }

  // Dropout words of query row `row` (packed row index) for the gathered keys.
  void draw_bits(const SeqBatch& seq, const AttnStep& step, int64_t row, int h, const std::vector<Gathered>& gathered,
                 const Work& w) const {
    for (const auto& gs : gathered)
      philox_fill(step.seed, step.stream, dropout_element(step.rows, row, h, c_.heads, seq.L_pad) + gs.begin,
                  gs.end - gs.begin, w.bits + gs.g0);
  }

  void one(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>* g, int b, int h, T* lse_out,
           const T* lse_in, const Work& w, const AttnStep& step, std::vector<KeySpan>& spans, std::vector<Gathered>& gathered) const {
    const int64_t r0 = seq.offsets[b];
    const int n = seq.length(b);
    if (n == 0) return;
    const T tau = T(1) / std::sqrt(static_cast<T>(c_.dk));
    const T inf = std::numeric_limits<T>::infinity();
    const DropoutDraw<T> drop(c_.attention_dropout, step.training);
    MapR<T> dKacc(w.dk, n, c_.dk, Eigen::OuterStride<>(c_.dk));
    MapR<T> dVacc(w.dv, n, c_.dv, Eigen::OuterStride<>(c_.dv));
    if (g != nullptr) {
      dKacc.setZero();
      dVacc.setZero();
    }
    const int nqb = p_->num_query_blocks(n);
    for (int qb = 0; qb < nqb; ++qb) {
      const RowRange r = p_->query_block(n, qb);
      const int br = r.end - r.begin;
      p_->key_spans(n, h, qb, step.seed, spans);
      const int nk = gather(seq, io, r0, h, r, spans, gathered, w);
      CMapR<T> Q(io.q + (r0 + r.begin) * io.ld_in + h * c_.dk, br, c_.dk, Eigen::OuterStride<>(io.ld_in));
      MapR<T> O(io.out + (r0 + r.begin) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
      if (nk == 0) {
        if (g == nullptr) {
          O.setZero();
          for (int i = 0; i < br; ++i) lse_out[(r0 + r.begin + i) * c_.heads + h] = inf;
        } else {
          MapR<T>(g->dq + (r0 + r.begin) * io.ld_in + h * c_.dk, br, c_.dk, Eigen::OuterStride<>(io.ld_in)).setZero();
        }
        continue;
      }
      MapR<T> Qs(w.q, br, c_.dk, Eigen::OuterStride<>(c_.dk));
      MapR<T> K(w.k, nk, c_.dk, Eigen::OuterStride<>(c_.dk));
      MapR<T> V(w.v, nk, c_.dv, Eigen::OuterStride<>(c_.dv));
      MapR<T> S(w.s, br, nk, Eigen::OuterStride<>(nk));
      Qs = Q * tau;
      S.noalias() = Qs * K.transpose();
      hide(S, r, gathered, nk, w, -inf);
      if (g == nullptr) {
        for (int i = 0; i < br; ++i) {
          const T m = S.row(i).maxCoeff();
          w.d[i] = m;
          if (m != -inf) S.row(i) = (S.row(i).array() - m).exp().matrix();
        }
        hide(S, r, gathered, nk, w, T(0));  // exactly zero (a vectorised exp of -inf may give a denormal)
        for (int i = 0; i < br; ++i) {
          const int64_t row = r0 + r.begin + i;
          T* prow = w.s + static_cast<int64_t>(i) * nk;
          if (w.d[i] == -inf) {
            S.row(i).setZero();
            lse_out[row * c_.heads + h] = inf;
            continue;
          }
          const T l = S.row(i).sum();
          lse_out[row * c_.heads + h] = w.d[i] + std::log(l);
          S.row(i) *= T(1) / l;
          if (drop.p > 0.0f) {
            draw_bits(seq, step, row, h, gathered, w);
            for (int j = 0; j < nk; ++j) prow[j] = dropout_keeps(w.bits[j], drop.thr) ? prow[j] * drop.scale : T(0);
          }
        }
        O.noalias() = S * V;
        continue;
      }
      // Backward: P from the saved LSE, then dS = P (dP z s - D), P' = P z s.
      for (int i = 0; i < br; ++i) {
        const T l = lse_in[(r0 + r.begin + i) * c_.heads + h];
        if (l == inf)
          S.row(i).setZero();
        else
          S.row(i) = (S.row(i).array() - l).exp().matrix();
      }
      hide(S, r, gathered, nk, w, T(0));
      CMapR<T> dO(g->dout + (r0 + r.begin) * io.ld_out + h * c_.dv, br, c_.dv, Eigen::OuterStride<>(io.ld_out));
      MapR<T> dP(w.dp, br, nk, Eigen::OuterStride<>(nk));
      for (int i = 0; i < br; ++i) w.d[i] = dO.row(i).dot(O.row(i));
      dP.noalias() = dO * V.transpose();
      for (int i = 0; i < br; ++i) {
        T* prow = w.s + static_cast<int64_t>(i) * nk;
        T* dprow = w.dp + static_cast<int64_t>(i) * nk;
        const T di = w.d[i];
        if (drop.p > 0.0f) {
          draw_bits(seq, step, r0 + r.begin + i, h, gathered, w);
          for (int j = 0; j < nk; ++j) {
            const T z = dropout_keeps(w.bits[j], drop.thr) ? drop.scale : T(0);
            dprow[j] = prow[j] * (dprow[j] * z - di);
            prow[j] *= z;
          }
        } else {
          for (int j = 0; j < nk; ++j) dprow[j] = prow[j] * (dprow[j] - di);
        }
      }
      MapR<T> dQ(g->dq + (r0 + r.begin) * io.ld_in + h * c_.dk, br, c_.dk, Eigen::OuterStride<>(io.ld_in));
      dQ.noalias() = (dP * K) * tau;
      MapR<T> gK(w.gk, nk, c_.dk, Eigen::OuterStride<>(c_.dk));
      MapR<T> gV(w.gv, nk, c_.dv, Eigen::OuterStride<>(c_.dv));
      gK.noalias() = dP.transpose() * Qs;
      gV.noalias() = S.transpose() * dO;
      for (int j = 0; j < nk; ++j) {
        dKacc.row(w.pos[j]) += gK.row(j);
        dVacc.row(w.pos[j]) += gV.row(j);
      }
    }
    if (g != nullptr) {
      MapR<T>(g->dk + r0 * io.ld_in + h * c_.dk, n, c_.dk, Eigen::OuterStride<>(io.ld_in)) = dKacc;
      MapR<T>(g->dv + r0 * io.ld_in + h * c_.dv, n, c_.dv, Eigen::OuterStride<>(io.ld_in)) = dVacc;
    }
  }

  AttnConfig c_;
  std::shared_ptr<const SparsePattern> p_;
  bool causal_;
  int rows_;
};

}  // namespace

template <class T>
std::unique_ptr<Attention<T>> make_block_sparse_attention(const AttnConfig& c, std::shared_ptr<const SparsePattern> p) {
  return std::unique_ptr<Attention<T>>(new BlockSparseAttention<T>(c, std::move(p)));
}
template std::unique_ptr<Attention<float>> make_block_sparse_attention<float>(const AttnConfig&,
                                                                              std::shared_ptr<const SparsePattern>);
template std::unique_ptr<Attention<double>> make_block_sparse_attention<double>(const AttnConfig&,
                                                                                std::shared_ptr<const SparsePattern>);

BlockSparseOptions BlockSparseOptions::parse(const AttnConfig& c) { return {c.hp.at("causal").get<bool>()}; }

AttnInfo block_sparse_info(AttnInfo info, PatternFactory pattern) {
  info.uses_attention_dropout = true;
  info.sparse_pattern = pattern;
  info.make_f32 = [pattern](const AttnConfig& c) { return make_block_sparse_attention<float>(c, pattern(c)); };
  info.make_f64 = [pattern](const AttnConfig& c) { return make_block_sparse_attention<double>(c, pattern(c)); };
  return info;
}

}  // namespace lra
