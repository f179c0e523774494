#include "model/model.h"

#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/rng.h"

namespace lra {

void ModelConfig::validate() const {
  LRA_CHECK(vocab_size > 0 && num_classes > 1, "vocab_size ({}) and num_classes ({}) must come from the task",
            vocab_size, num_classes);
  LRA_CHECK(max_length > 0, "max_length must be positive, got {}", max_length);
  LRA_CHECK(emb_dim > 0 && num_heads > 0 && num_layers >= 0 && qkv_dim > 0 && mlp_dim > 0,
            "emb_dim, num_heads, qkv_dim and mlp_dim must be positive and num_layers non-negative");
  LRA_CHECK(qkv_dim % num_heads == 0, "qkv_dim ({}) must be divisible by num_heads ({})", qkv_dim, num_heads);
  LRA_CHECK(!(rope && learn_pos_emb),
            "pos_emb=rope and learn_pos_emb=true: with rotary embeddings positions enter through the rotation of "
            "queries and keys only; set learn_pos_emb=false (or pos_emb=absolute)");
  LRA_CHECK(!rope || head_dim() % 2 == 0,
            "pos_emb=rope rotates pairs of a head's columns, so the head size qkv_dim / num_heads must be even "
            "(got {} / {} = {})",
            qkv_dim, num_heads, head_dim());
  LRA_CHECK(!sinusoidal() || emb_dim % 2 == 0,
            "the sinusoidal position table needs an even emb_dim (got {}); use an even size or learn_pos_emb=true",
            emb_dim);
  LRA_CHECK(!dual || mlp_dim >= 2, "the dual encoder's head has a layer of mlp_dim/2 units; mlp_dim must be at least "
            "2, got {}", mlp_dim);
  LRA_CHECK(dropout_rate >= 0 && dropout_rate < 1 && attention_dropout_rate >= 0 && attention_dropout_rate < 1,
            "dropout rates must be in [0, 1), got dropout_rate={} attention_dropout_rate={}", dropout_rate,
            attention_dropout_rate);
  LRA_CHECK(!(has_cls() && attn_params.value("causal", false)),
            "causal attention with classifier_pool=CLS: the CLS vector is the first row, so under a causal mask it "
            "sees only itself and the classifier never sees the input; set classifier_pool=MEAN (--set "
            "classifier_pool=MEAN) or causal=false");
}

std::vector<int> ModelConfig::head_widths() const {
  if (dual) return {pair_blocks(interaction) * emb_dim, mlp_dim, mlp_dim / 2, num_classes};
  return {emb_dim, mlp_dim, num_classes};
}

// Parameters and saved activations of one encoder block.
template <class T>
struct Model<T>::Layer {
  T *ln1_g, *ln1_b, *qkv_w, *qkv_b, *o_w, *o_b, *ln2_g, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
  T *d_ln1_g, *d_ln1_b, *d_qkv_w, *d_qkv_b, *d_o_w, *d_o_b, *d_ln2_g, *d_ln2_b, *d_fc1_w, *d_fc1_b, *d_fc2_w,
      *d_fc2_b;
  std::vector<T*> attn_p, attn_dp;  // the attention variant's own learned weights, if any
  T *ln1, *mean1, *rstd1, *qkv, *ao, *xm, *ln2, *mean2, *rstd2, *hpre;
  void* attn_saved;
};

namespace {
// Dropout sites within a step; each gets its own counter stream.
enum Site { kEmbDrop = 0, kAttnDrop = 1, kAttnOutDrop = 2, kMlpHiddenDrop = 3, kMlpOutDrop = 4, kSitesPerLayer = 8 };
}  // namespace

template <class T>
Model<T>::Model(const ModelConfig& cfg, Backend<T>& be, int max_batch, int threads)
    : cfg_(cfg),
      be_(be),
      max_batch_(max_batch),
      threads_(threads),
      max_seqs_(max_batch * cfg.docs()),
      max_rows_(static_cast<int64_t>(max_seqs_) * cfg.positions()),
      params_arena_("parameters", be.allocator()),
      grads_arena_("gradients", be.allocator()),
      acts_arena_("activations", be.allocator()),
      scratch_arena_("scratch", be.allocator()) {
  cfg_.validate();
  LRA_CHECK(max_batch > 0, "batch size must be positive, got {}", max_batch);
  const AttnInfo& info = find_attention(cfg_.attn);
  AttnConfig ac;
  ac.heads = cfg_.num_heads;
  ac.dk = ac.dv = cfg_.head_dim();
  ac.max_len = cfg_.positions();
  ac.threads = threads_;
  ac.attention_dropout = cfg_.attention_dropout_rate;
  ac.hp = resolve_attention_params(info, cfg_.attn_params);
  cfg_.attn_params = ac.hp;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    ac.layer = l;
    attn_.push_back(be_.make_attention(cfg_.attn, ac));
  }
  layers_.resize(static_cast<size_t>(cfg_.num_layers));
  const std::vector<int> widths = cfg_.head_widths();
  head_.resize(widths.size() - 1);
  for (size_t k = 0; k < head_.size(); ++k) {
    head_[k].in = widths[k];
    head_[k].out = widths[k + 1];
  }
  // Count, allocate exactly, then hand out pointers with the same walk.
  layout();
  params_arena_.reserve(params_arena_.used());
  grads_arena_.reserve(grads_arena_.used());
  acts_arena_.reserve(acts_arena_.used());
  // The attention variants' scratch, and the backend's own (the GPU's embedding-gradient sort).
  workspace_bytes_ = be.reserve_workspace(max_rows_);
  size_t scratch = 0;
  for (auto& a : attn_) scratch = std::max(scratch, a->scratch_bytes(max_seqs_, max_rows_));
  scratch_arena_.reserve(scratch);
  layout();
  scratch_ = scratch_arena_.take_bytes(scratch);
  if (cfg_.sinusoidal()) {
    std::vector<T> table(static_cast<size_t>(cfg_.positions()) * cfg_.emb_dim);
    sinusoidal_table(table.data(), cfg_.positions(), cfg_.emb_dim);
    be_.upload(pos_table_, table.data(), table.size() * sizeof(T));
  }
  if (cfg_.rope) {
    const size_t n = static_cast<size_t>(cfg_.positions()) * static_cast<size_t>(cfg_.head_dim() / 2);
    std::vector<T> c(n), s(n);
    rope_table(c.data(), s.data(), cfg_.positions(), cfg_.head_dim());
    be_.upload(rope_cos_, c.data(), n * sizeof(T));
    be_.upload(rope_sin_, s.data(), n * sizeof(T));
  }
}

template <class T>
Model<T>::~Model() = default;

template <class T>
void Model<T>::declare(const std::string& name, std::vector<int> shape, Init init, double scale, T** value,
                       T** grad) {
  Param p;
  p.name = name;
  p.shape = std::move(shape);
  p.size = 1;
  for (int s : p.shape) p.size *= s;
  p.init = init;
  p.scale = scale;
  // Parameters are packed without gaps so one AdamW call covers them all. While the block does not
  // exist yet (the counting walk) the pointers stay null.
  p.value = *value = param_values_ != nullptr ? param_values_ + num_params_ : nullptr;
  p.grad = *grad = param_grads_ != nullptr ? param_grads_ + num_params_ : nullptr;
  num_params_ += p.size;
  params_.push_back(std::move(p));
}

template <class T>
void Model<T>::layout() {
  params_arena_.rewind();
  grads_arena_.rewind();
  acts_arena_.rewind();
  const int D = cfg_.emb_dim, Q = cfg_.qkv_dim, M = cfg_.mlp_dim;
  const int64_t R = max_rows_;
  // Parameter block: counted by a walk over the declarations, then taken in one piece.
  param_values_ = nullptr;
  param_grads_ = nullptr;
  const bool assign = params_arena_.has_block();
  auto declare_all = [&] {
    num_params_ = 0;
    params_.clear();
    declare("embed.tok", {cfg_.vocab_size, D}, Init::Normal, 1.0, &wte_, &dwte_);
    if (cfg_.learn_pos_emb) declare("embed.pos", {cfg_.positions(), D}, Init::Normal, 0.02, &wpe_, &dwpe_);
    if (cfg_.has_cls()) declare("embed.cls", {D}, Init::Zeros, 0.0, &cls_, &dcls_);
    for (int l = 0; l < cfg_.num_layers; ++l) {
      Layer& L = layers_[static_cast<size_t>(l)];
      const std::string p = "layers." + std::to_string(l) + ".";
      declare(p + "ln1.weight", {D}, Init::Ones, 0.0, &L.ln1_g, &L.d_ln1_g);
      declare(p + "ln1.bias", {D}, Init::Zeros, 0.0, &L.ln1_b, &L.d_ln1_b);
      declare(p + "attn.qkv.weight", {3 * Q, D}, Init::Normal, 1.0 / std::sqrt(D), &L.qkv_w, &L.d_qkv_w);
      L.qkv_b = L.d_qkv_b = nullptr;
      if (cfg_.qkv_bias) declare(p + "attn.qkv.bias", {3 * Q}, Init::Zeros, 0.0, &L.qkv_b, &L.d_qkv_b);
      declare(p + "attn.out.weight", {D, Q}, Init::Normal, 1.0 / std::sqrt(Q), &L.o_w, &L.d_o_w);
      declare(p + "attn.out.bias", {D}, Init::Zeros, 0.0, &L.o_b, &L.d_o_b);
      const auto specs = attn_[static_cast<size_t>(l)]->param_specs();
      L.attn_p.assign(specs.size(), nullptr);
      L.attn_dp.assign(specs.size(), nullptr);
      for (size_t i = 0; i < specs.size(); ++i)
        declare(p + "attn." + specs[i].name, specs[i].shape, specs[i].init, specs[i].scale, &L.attn_p[i],
                &L.attn_dp[i]);
      declare(p + "ln2.weight", {D}, Init::Ones, 0.0, &L.ln2_g, &L.d_ln2_g);
      declare(p + "ln2.bias", {D}, Init::Zeros, 0.0, &L.ln2_b, &L.d_ln2_b);
      declare(p + "mlp.fc1.weight", {M, D}, Init::XavierUniform, D + M, &L.fc1_w, &L.d_fc1_w);
      declare(p + "mlp.fc1.bias", {M}, Init::Zeros, 0.0, &L.fc1_b, &L.d_fc1_b);
      declare(p + "mlp.fc2.weight", {D, M}, Init::XavierUniform, D + M, &L.fc2_w, &L.d_fc2_w);
      declare(p + "mlp.fc2.bias", {D}, Init::Zeros, 0.0, &L.fc2_b, &L.d_fc2_b);
    }
    declare("final_ln.weight", {D}, Init::Ones, 0.0, &lnf_g_, &dlnf_g_);
    declare("final_ln.bias", {D}, Init::Zeros, 0.0, &lnf_b_, &dlnf_b_);
    for (size_t k = 0; k < head_.size(); ++k) {
      HeadLayer& h = head_[k];
      const std::string p = "head.fc" + std::to_string(k + 1) + ".";
      declare(p + "weight", {h.out, h.in}, Init::Normal, 1.0 / std::sqrt(h.in), &h.w, &h.dw);
      declare(p + "bias", {h.out}, Init::Zeros, 0.0, &h.b, &h.db);
    }
  };
  declare_all();  // counts num_params_
  param_values_ = params_arena_.take<T>(static_cast<size_t>(num_params_));
  param_grads_ = grads_arena_.take<T>(static_cast<size_t>(num_params_));
  if (assign) {
    declare_all();  // now with the block: every pointer is real
    for (int l = 0; l < cfg_.num_layers; ++l)
      attn_[static_cast<size_t>(l)]->bind_params(layers_[static_cast<size_t>(l)].attn_p,
                                                  layers_[static_cast<size_t>(l)].attn_dp);
  }

  // Inputs.
  tokens_ = acts_arena_.take<int32_t>(static_cast<size_t>(R));
  tok_offsets_ = acts_arena_.take<int32_t>(static_cast<size_t>(max_seqs_) + 1);
  row_offsets_ = acts_arena_.take<int32_t>(static_cast<size_t>(max_seqs_) + 1);
  key_mask_ = acts_arena_.take<uint8_t>(static_cast<size_t>(R));
  labels_ = acts_arena_.take<int32_t>(static_cast<size_t>(max_batch_));
  pos_table_ = cfg_.sinusoidal() ? acts_arena_.take<T>(static_cast<size_t>(cfg_.positions()) * D) : nullptr;
  const size_t rope_entries = static_cast<size_t>(cfg_.positions()) * static_cast<size_t>(cfg_.head_dim() / 2);
  rope_cos_ = cfg_.rope ? acts_arena_.take<T>(rope_entries) : nullptr;
  rope_sin_ = cfg_.rope ? acts_arena_.take<T>(rope_entries) : nullptr;
  // Forward activations kept for the backward.
  x_.assign(static_cast<size_t>(cfg_.num_layers) + 1, nullptr);
  for (auto& x : x_) x = acts_arena_.take<T>(static_cast<size_t>(R * D));
  for (int l = 0; l < cfg_.num_layers; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    L.ln1 = acts_arena_.take<T>(static_cast<size_t>(R * D));
    L.mean1 = acts_arena_.take<T>(static_cast<size_t>(R));
    L.rstd1 = acts_arena_.take<T>(static_cast<size_t>(R));
    L.qkv = acts_arena_.take<T>(static_cast<size_t>(R * 3 * Q));
    L.ao = acts_arena_.take<T>(static_cast<size_t>(R * Q));
    L.attn_saved = acts_arena_.take_bytes(attn_[static_cast<size_t>(l)]->saved_bytes(max_seqs_, R));
    L.xm = acts_arena_.take<T>(static_cast<size_t>(R * D));
    L.ln2 = acts_arena_.take<T>(static_cast<size_t>(R * D));
    L.mean2 = acts_arena_.take<T>(static_cast<size_t>(R));
    L.rstd2 = acts_arena_.take<T>(static_cast<size_t>(R));
    L.hpre = acts_arena_.take<T>(static_cast<size_t>(R * M));
  }
  lnf_ = acts_arena_.take<T>(static_cast<size_t>(R * D));
  lnf_mean_ = acts_arena_.take<T>(static_cast<size_t>(R));
  lnf_rstd_ = acts_arena_.take<T>(static_cast<size_t>(R));
  pooled_ = acts_arena_.take<T>(static_cast<size_t>(max_seqs_) * D);
  pair_ = cfg_.dual ? acts_arena_.take<T>(static_cast<size_t>(max_batch_) * head_[0].in) : nullptr;
  for (HeadLayer& h : head_) h.y = acts_arena_.take<T>(static_cast<size_t>(max_batch_) * h.out);
  probs_ = acts_arena_.take<T>(static_cast<size_t>(max_batch_) * cfg_.num_classes);
  // Temporaries and gradient buffers, shared by all layers.
  tmp_ = acts_arena_.take<T>(static_cast<size_t>(R * D));
  hact_ = acts_arena_.take<T>(static_cast<size_t>(R * M));
  dx_ = acts_arena_.take<T>(static_cast<size_t>(R * D));
  dln_ = acts_arena_.take<T>(static_cast<size_t>(R * D));
  dh_ = acts_arena_.take<T>(static_cast<size_t>(R * M));
  dao_ = acts_arena_.take<T>(static_cast<size_t>(R * Q));
  dqkv_ = acts_arena_.take<T>(static_cast<size_t>(R * 3 * Q));
  dpooled_ = acts_arena_.take<T>(static_cast<size_t>(max_seqs_) * D);
  dpair_ = cfg_.dual ? acts_arena_.take<T>(static_cast<size_t>(max_batch_) * head_[0].in) : nullptr;
  for (HeadLayer& h : head_) h.dy = acts_arena_.take<T>(static_cast<size_t>(max_batch_) * h.out);
}

template <class T>
typename Model<T>::Param& Model<T>::param(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return p;
  LRA_FAIL("the model has no parameter '{}'", name);
}

template <class T>
void Model<T>::init_params(uint64_t seed) {
  std::vector<T> host;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    host.assign(static_cast<size_t>(p.size), T(0));
    Rng rng(seed, (streams::kInit << 32) | i);  // one stream per parameter: order-independent
    fill_init(host.data(), p.size, p.init, p.scale, rng);
    be_.upload(p.value, host.data(), host.size() * sizeof(T));
  }
}

template <class T>
void Model<T>::zero_grads() {
  be_.fill_zero(param_grads_, num_params_);
}

template <class T>
void Model<T>::load_batch(const Batch& batch) {
  LRA_CHECK(batch.B > 0 && batch.B <= max_batch_, "batch of {} examples; the model was planned for 1..{}",
            batch.B, max_batch_);
  LRA_CHECK(batch.docs == cfg_.docs(), "a batch of {} document(s) per example for a model of {}{}", batch.docs,
            cfg_.docs(), cfg_.dual ? " (the dual encoder reads pairs)" : "");
  const int S = batch.B * batch.docs;
  LRA_CHECK(static_cast<int>(batch.offsets.size()) == S + 1 && static_cast<int>(batch.labels.size()) == batch.B,
            "malformed batch: {} offsets and {} labels for {} examples of {} document(s)", batch.offsets.size(),
            batch.labels.size(), batch.B, batch.docs);
  const int cls = cfg_.has_cls() ? 1 : 0;
  host_row_offsets_.assign(static_cast<size_t>(S) + 1, 0);
  int longest = 0;  // rows of the longest sequence
  for (int b = 0; b < S; ++b) {
    const int len = batch.offsets[b + 1] - batch.offsets[b];
    LRA_CHECK(len >= 0 && len <= cfg_.max_length, "document {} of the batch has {} tokens; max_length is {}", b, len,
              cfg_.max_length);
    host_row_offsets_[b + 1] = host_row_offsets_[b] + len + cls;
    longest = std::max(longest, len + cls);
  }
  for (int32_t label : batch.labels)
    LRA_CHECK(label >= 0 && label < cfg_.num_classes, "label {} is outside [0, {})", label, cfg_.num_classes);
  for (int32_t t : batch.tokens)
    LRA_CHECK(t >= 0 && t < cfg_.vocab_size, "token id {} is outside the vocabulary [0, {})", t, cfg_.vocab_size);
  B_ = batch.B;
  S_ = S;
  L_pad_ = std::max(batch.L_pad + cls, longest);
  rows_ = host_row_offsets_.back();
  drop_rows_ = RowMap{};
  drop_rows_.shift0 = batch.tokens_shift[0] + cls * batch.docs_shift[0];
  if (batch.docs == 2) {
    drop_rows_.split = host_row_offsets_[static_cast<size_t>(B_)];
    drop_rows_.shift1 = batch.tokens_shift[1] + cls * batch.docs_shift[1];
  }
  be_.upload(tokens_, batch.tokens.data(), batch.tokens.size() * sizeof(int32_t));
  be_.upload(tok_offsets_, batch.offsets.data(), batch.offsets.size() * sizeof(int32_t));
  be_.upload(row_offsets_, host_row_offsets_.data(), host_row_offsets_.size() * sizeof(int32_t));
  be_.upload(labels_, batch.labels.data(), batch.labels.size() * sizeof(int32_t));
  has_key_mask_ = !batch.key_mask.empty();
  if (has_key_mask_) {
    LRA_CHECK(static_cast<int64_t>(batch.key_mask.size()) == batch.num_tokens(),
              "key_mask has {} entries for {} tokens", batch.key_mask.size(), batch.num_tokens());
    host_key_mask_.assign(static_cast<size_t>(rows_), 0);
    for (int b = 0; b < S_; ++b) {
      size_t r = static_cast<size_t>(host_row_offsets_[b]);
      if (cls) host_key_mask_[r++] = 1;
      for (int32_t t = batch.offsets[b]; t < batch.offsets[b + 1]; ++t)
        host_key_mask_[r++] = batch.key_mask[static_cast<size_t>(t)];
    }
    be_.upload(key_mask_, host_key_mask_.data(), host_key_mask_.size());
  }
}

template <class T>
SeqBatch Model<T>::seq() const {
  SeqBatch s;
  s.B = S_;
  s.offsets = host_row_offsets_.data();
  s.key_mask = has_key_mask_ ? host_key_mask_.data() : nullptr;
  s.L_pad = L_pad_;
  s.dev_offsets = row_offsets_;
  s.dev_key_mask = has_key_mask_ ? key_mask_ : nullptr;
  return s;
}

template <class T>
PackedRows Model<T>::packed_rows() const {
  return PackedRows{row_offsets_, has_key_mask_ ? key_mask_ : nullptr, S_, rows_};
}

template <class T>
AttnIO<T> Model<T>::attn_io(const Layer& l) const {
  const int Q = cfg_.qkv_dim;
  AttnIO<T> io;
  io.q = l.qkv;
  io.k = l.qkv + Q;
  io.v = l.qkv + 2 * Q;
  io.ld_in = 3 * Q;
  io.out = l.ao;
  io.ld_out = Q;
  return io;
}

template <class T>
uint64_t Model<T>::stream(int64_t step, int site) const {
  return streams::kDropout | (static_cast<uint64_t>(step) << 16) | static_cast<uint64_t>(site);
}

// Element-wise dropout over the batch's rows (`width` elements each), segment by segment (RowMap), each
// keyed by its rows in the global batch.
template <class T>
template <class F>
void Model<T>::for_row_segments(int64_t width, F&& f) const {
  const int64_t split = std::min(drop_rows_.split, rows_);
  if (split > 0) f(int64_t{0}, split * width, static_cast<uint64_t>(drop_rows_(0) * width));
  if (split < rows_) f(split * width, (rows_ - split) * width, static_cast<uint64_t>(drop_rows_(split) * width));
}

template <class T>
void Model<T>::drop_rows(T* y, const T* x, int64_t width, float p, uint64_t seed, uint64_t stream) {
  for_row_segments(width, [&](int64_t o, int64_t n, uint64_t first) {
    be_.dropout_forward(y + o, x + o, n, p, seed, stream, first);
  });
}

template <class T>
void Model<T>::drop_rows_backward(T* dx, const T* dy, int64_t width, float p, uint64_t seed, uint64_t stream) {
  for_row_segments(width, [&](int64_t o, int64_t n, uint64_t first) {
    be_.dropout_backward(dx + o, dy + o, n, p, seed, stream, first);
  });
}

template <class T>
void Model<T>::residual_drop_rows(T* out, const T* res, const T* h, int64_t width, float p, uint64_t seed,
                                  uint64_t stream) {
  for_row_segments(width, [&](int64_t o, int64_t n, uint64_t first) {
    be_.residual_dropout_forward(out + o, res + o, h + o, n, p, seed, stream, first);
  });
}

template <class T>
double Model<T>::forward(bool training, uint64_t seed, int64_t step) {
  LRA_CHECK(B_ > 0, "forward() before load_batch()");
  const int D = cfg_.emb_dim, Q = cfg_.qkv_dim, M = cfg_.mlp_dim;
  const int64_t R = rows_;
  const float p = training ? cfg_.dropout_rate : 0.0f;
  const SeqBatch s = seq();
  PhaseClock<Backend<T>> clk(be_, profile_);
  be_.embedding_forward(x_[0], tokens_, tok_offsets_, packed_rows(), wte_,
                        cfg_.learn_pos_emb ? wpe_ : pos_table_, cfg_.has_cls() ? cls_ : nullptr, D);  // null: rope
  clk.charge(Phase::Embedding);
  drop_rows(x_[0], x_[0], D, p, seed, stream(step, kEmbDrop));
  clk.charge(Phase::Dropout);
  for (int li = 0; li < cfg_.num_layers; ++li) {
    Layer& l = layers_[static_cast<size_t>(li)];
    const int site = (li + 1) * kSitesPerLayer;
    T* x = x_[static_cast<size_t>(li)];
    be_.layernorm_forward(l.ln1, l.mean1, l.rstd1, x, l.ln1_g, l.ln1_b, R, D, static_cast<T>(cfg_.layernorm_eps));
    clk.charge(Phase::LayerNorm);
    be_.linear_forward(l.qkv, l.ln1, l.qkv_w, l.qkv_b, R, D, 3 * Q);
    if (cfg_.rope)
      for (int part = 0; part < 2; ++part)  // queries, then keys
        be_.rope_rotate(l.qkv + part * Q, 3 * Q, packed_rows(), cfg_.num_heads, cfg_.head_dim(), rope_cos_, rope_sin_,
                        false);
    clk.charge(Phase::Projections);
    AttnStep st{training, seed, stream(step, site + kAttnDrop), step, drop_rows_};
    attn_[static_cast<size_t>(li)]->forward(s, attn_io(l), l.attn_saved, scratch_, st);
    clk.charge(Phase::AttentionFwd);
    be_.linear_forward(tmp_, l.ao, l.o_w, l.o_b, R, Q, D);
    clk.charge(Phase::Projections);
    residual_drop_rows(l.xm, x, tmp_, D, p, seed, stream(step, site + kAttnOutDrop));
    clk.charge(Phase::Dropout);
    be_.layernorm_forward(l.ln2, l.mean2, l.rstd2, l.xm, l.ln2_g, l.ln2_b, R, D, static_cast<T>(cfg_.layernorm_eps));
    clk.charge(Phase::LayerNorm);
    be_.linear_forward(l.hpre, l.ln2, l.fc1_w, l.fc1_b, R, D, M);
    be_.gelu_forward(hact_, l.hpre, R * M, cfg_.gelu);
    clk.charge(Phase::Mlp);
    drop_rows(hact_, hact_, M, p, seed, stream(step, site + kMlpHiddenDrop));
    clk.charge(Phase::Dropout);
    be_.linear_forward(tmp_, hact_, l.fc2_w, l.fc2_b, R, M, D);
    clk.charge(Phase::Mlp);
    residual_drop_rows(x_[static_cast<size_t>(li) + 1], l.xm, tmp_, D, p, seed, stream(step, site + kMlpOutDrop));
    clk.charge(Phase::Dropout);
  }
  be_.layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, x_.back(), lnf_g_, lnf_b_, R, D,
                        static_cast<T>(cfg_.layernorm_eps));
  clk.charge(Phase::LayerNorm);
  be_.pool_forward(pooled_, lnf_, packed_rows(), D, cfg_.pool);
  if (cfg_.dual) be_.pair_features_forward(pair_, pooled_, B_, D, cfg_.interaction);
  const T* in = cfg_.dual ? pair_ : pooled_;
  for (size_t k = 0; k < head_.size(); ++k) {
    const HeadLayer& h = head_[k];
    be_.linear_forward(h.y, in, h.w, h.b, B_, h.in, h.out);
    if (k + 1 < head_.size()) be_.relu_forward(h.y, h.y, static_cast<int64_t>(B_) * h.out);
    in = h.y;
  }
  const double loss = be_.cross_entropy_forward(probs_, nullptr, head_.back().y, labels_, B_, cfg_.num_classes);
  clk.charge(Phase::PoolAndHead);
  return loss;
}

template <class T>
void Model<T>::backward(uint64_t seed, int64_t step, double weight) {
  const int D = cfg_.emb_dim, Q = cfg_.qkv_dim, M = cfg_.mlp_dim;
  const int64_t R = rows_;
  const float p = cfg_.dropout_rate;
  const SeqBatch s = seq();
  PhaseClock<Backend<T>> clk(be_, profile_);
  be_.cross_entropy_backward(head_.back().dy, probs_, labels_, B_, cfg_.num_classes);
  if (weight != 1.0) be_.scale_inplace(head_.back().dy, static_cast<int64_t>(B_) * cfg_.num_classes, static_cast<T>(weight));
  for (size_t k = head_.size(); k-- > 0;) {
    const HeadLayer& h = head_[k];
    // The layer's input and its gradient: the previous layer's ReLU output, or the head's input.
    const T* x = k > 0 ? head_[k - 1].y : cfg_.dual ? pair_ : pooled_;
    T* dx = k > 0 ? head_[k - 1].dy : cfg_.dual ? dpair_ : dpooled_;
    be_.linear_backward(dx, h.dw, h.db, h.dy, x, h.w, B_, h.in, h.out);
    if (k > 0) be_.relu_backward(dx, dx, x, static_cast<int64_t>(B_) * h.in);
  }
  if (cfg_.dual) be_.pair_features_backward(dpooled_, dpair_, pooled_, B_, D, cfg_.interaction);
  be_.pool_backward(dln_, dpooled_, lnf_, packed_rows(), D, cfg_.pool);
  clk.charge(Phase::PoolAndHead);
  be_.fill_zero(dx_, R * D);
  be_.layernorm_backward(dx_, dlnf_g_, dlnf_b_, dln_, x_.back(), lnf_mean_, lnf_rstd_, lnf_g_, R, D);
  clk.charge(Phase::LayerNorm);
  for (int li = cfg_.num_layers - 1; li >= 0; --li) {
    Layer& l = layers_[static_cast<size_t>(li)];
    const int site = (li + 1) * kSitesPerLayer;
    // MLP branch: x_{l+1} = xm + drop(fc2(drop(gelu(fc1(LN2(xm))))))
    drop_rows_backward(tmp_, dx_, D, p, seed, stream(step, site + kMlpOutDrop));
    clk.charge(Phase::Dropout);
    be_.gelu_forward(hact_, l.hpre, R * M, cfg_.gelu);  // recomputed rather than stored
    clk.charge(Phase::Mlp);
    drop_rows(hact_, hact_, M, p, seed, stream(step, site + kMlpHiddenDrop));
    clk.charge(Phase::Dropout);
    be_.linear_backward(dh_, l.d_fc2_w, l.d_fc2_b, tmp_, hact_, l.fc2_w, R, M, D);
    clk.charge(Phase::Mlp);
    drop_rows_backward(dh_, dh_, M, p, seed, stream(step, site + kMlpHiddenDrop));
    clk.charge(Phase::Dropout);
    be_.gelu_backward(dh_, dh_, l.hpre, R * M, cfg_.gelu);
    be_.linear_backward(dln_, l.d_fc1_w, l.d_fc1_b, dh_, l.ln2, l.fc1_w, R, D, M);
    clk.charge(Phase::Mlp);
    be_.layernorm_backward(dx_, l.d_ln2_g, l.d_ln2_b, dln_, l.xm, l.mean2, l.rstd2, l.ln2_g, R, D);
    clk.charge(Phase::LayerNorm);
    // Attention branch: xm = x + drop(Attn(LN1(x)) W_o^T + b_o)
    drop_rows_backward(tmp_, dx_, D, p, seed, stream(step, site + kAttnOutDrop));
    clk.charge(Phase::Dropout);
    be_.linear_backward(dao_, l.d_o_w, l.d_o_b, tmp_, l.ao, l.o_w, R, Q, D);
    clk.charge(Phase::Projections);
    AttnGrads<T> g;
    g.dout = dao_;
    g.dq = dqkv_;
    g.dk = dqkv_ + Q;
    g.dv = dqkv_ + 2 * Q;
    AttnStep st{true, seed, stream(step, site + kAttnDrop), step, drop_rows_};
    attn_[static_cast<size_t>(li)]->backward(s, attn_io(l), g, l.attn_saved, scratch_, st);
    clk.charge(Phase::AttentionBwd);
    if (cfg_.rope)
      for (int part = 0; part < 2; ++part)
        be_.rope_rotate(dqkv_ + part * Q, 3 * Q, packed_rows(), cfg_.num_heads, cfg_.head_dim(), rope_cos_, rope_sin_,
                        true);
    be_.linear_backward(dln_, l.d_qkv_w, l.d_qkv_b, dqkv_, l.ln1, l.qkv_w, R, D, 3 * Q);
    clk.charge(Phase::Projections);
    be_.layernorm_backward(dx_, l.d_ln1_g, l.d_ln1_b, dln_, x_[static_cast<size_t>(li)], l.mean1, l.rstd1,
                           l.ln1_g, R, D);
    clk.charge(Phase::LayerNorm);
  }
  drop_rows_backward(dx_, dx_, D, p, seed, stream(step, kEmbDrop));
  clk.charge(Phase::Dropout);
  be_.embedding_backward(dwte_, cfg_.learn_pos_emb ? dwpe_ : nullptr, cfg_.has_cls() ? dcls_ : nullptr, dx_,
                         tokens_, tok_offsets_, packed_rows(), D);
  clk.charge(Phase::Embedding);
}

template <class T>
std::vector<T> Model<T>::logits() const {
  std::vector<T> out(static_cast<size_t>(B_) * cfg_.num_classes);
  be_.download(out.data(), head_.back().y, out.size() * sizeof(T));
  return out;
}

template <class T>
MemoryReport Model<T>::memory() const {
  MemoryReport m;
  m.params = params_arena_.peak();
  m.grads = grads_arena_.peak();
  m.activations = acts_arena_.peak();
  m.scratch = scratch_arena_.peak() + workspace_bytes_;
  return m;
}

template class Model<float>;
template class Model<double>;

}  // namespace lra
