// The LRA encoder classifier:
//   Embedding (+ sinusoidal or learned positions, + CLS) -> dropout
//   -> N x pre-LN block { x += drop(Attn(LN(x)) W_o);  x += drop(W_2 drop(gelu(W_1 LN(x)))) }
//   -> LayerNorm -> pool (CLS or masked mean) -> Dense(mlp) -> ReLU -> Dense(classes) -> cross-entropy
// The dual encoder (retrieval) runs both documents of each example through the same encoder as one
// batch of 2B sequences, combines the two pooled vectors (pair_features) and adds a Dense(mlp/2) + ReLU
// to the head.
// Every buffer lives in an arena planned from (config, max batch) at construction; forward and
// backward allocate nothing. The model talks to its device only through Backend<T>.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "backend/backend.h"
#include "core/arena.h"
#include "core/init.h"
#include "data/batch.h"
#include "model/config.h"
#include "model/profile.h"

namespace lra {

struct MemoryReport {
  size_t params = 0, grads = 0, activations = 0, scratch = 0;
  size_t total() const { return params + grads + activations + scratch; }
};

template <class T>
class Model {
 public:
  struct Param {
    std::string name;
    std::vector<int> shape;
    int64_t size = 0;
    Init init = Init::Zeros;
    double scale = 0.0;  // see Init
    T* value = nullptr;
    T* grad = nullptr;
  };

  // max_batch examples of at most cfg.max_length tokens; threads bounds the attention scratch.
  Model(const ModelConfig& cfg, Backend<T>& be, int max_batch, int threads);
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  Backend<T>& backend() { return be_; }
  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  Param& param(const std::string& name);
  int64_t num_params() const { return num_params_; }
  T* param_block() { return param_values_; }  // all parameters, contiguous
  T* grad_block() { return param_grads_; }

  // Sums the time of each phase of forward() and backward() into `profile` (nullptr: off, the default).
  void set_profile(StepProfile* profile) { profile_ = profile; }

  void init_params(uint64_t seed);
  void zero_grads();

  // Uploads a batch (at most max_batch examples of at most max_length tokens per document).
  void load_batch(const Batch& batch);
  // Returns the mean cross-entropy of the loaded batch. Dropout and random attention features are
  // drawn from (seed, step); an evaluation passes the last training step (see AttnStep).
  double forward(bool training, uint64_t seed, int64_t step);
  // Accumulates parameter gradients of weight x the last forward's loss (call zero_grads first). A rank of a
  // data-parallel step weighs its share's mean loss by its share of the global batch.
  void backward(uint64_t seed, int64_t step, double weight = 1.0);
  // Host copy of the last forward's logits, B x num_classes.
  std::vector<T> logits() const;
  int batch_size() const { return B_; }
  // The attention of encoder layer `layer` (to fix its random features in tests).
  Attention<T>& attention(int layer) { return *attn_.at(static_cast<size_t>(layer)); }

  MemoryReport memory() const;

 private:
  struct Layer;
  // One dense layer of the head: y = x W^T + b (then ReLU, except for the last, whose y is the logits).
  struct HeadLayer {
    int in = 0, out = 0;
    T *w = nullptr, *b = nullptr, *dw = nullptr, *db = nullptr;
    T *y = nullptr, *dy = nullptr;  // (max_batch, out)
  };
  void layout();
  void declare(const std::string& name, std::vector<int> shape, Init init, double scale, T** value, T** grad);
  SeqBatch seq() const;
  PackedRows packed_rows() const;
  AttnIO<T> attn_io(const Layer& l) const;
  uint64_t stream(int64_t step, int site) const;
  template <class F>
  void for_row_segments(int64_t width, F&& f) const;
  void drop_rows(T* y, const T* x, int64_t width, float p, uint64_t seed, uint64_t stream);
  void drop_rows_backward(T* dx, const T* dy, int64_t width, float p, uint64_t seed, uint64_t stream);
  void residual_drop_rows(T* out, const T* res, const T* h, int64_t width, float p, uint64_t seed, uint64_t stream);

  ModelConfig cfg_;
  Backend<T>& be_;
  int max_batch_, threads_;
  int max_seqs_;  // max_batch_ * documents per example
  int64_t max_rows_;
  Arena params_arena_, grads_arena_, acts_arena_, scratch_arena_;
  std::vector<Param> params_;
  int64_t num_params_ = 0;
  T* param_values_ = nullptr;
  T* param_grads_ = nullptr;
  std::vector<std::unique_ptr<Attention<T>>> attn_;
  std::vector<Layer> layers_;
  std::vector<HeadLayer> head_;

  // Embedding and head parameters.
  T *wte_ = nullptr, *dwte_ = nullptr, *wpe_ = nullptr, *dwpe_ = nullptr, *cls_ = nullptr, *dcls_ = nullptr;
  T *lnf_g_ = nullptr, *dlnf_g_ = nullptr, *lnf_b_ = nullptr, *dlnf_b_ = nullptr;
  // Inputs on the device.
  int32_t *tokens_ = nullptr, *tok_offsets_ = nullptr, *row_offsets_ = nullptr, *labels_ = nullptr;
  uint8_t* key_mask_ = nullptr;
  std::vector<int32_t> host_row_offsets_;
  std::vector<uint8_t> host_key_mask_;
  bool has_key_mask_ = false;
  int B_ = 0, S_ = 0, L_pad_ = 0;  // examples, sequences (B_ * documents per example), padded length
  int64_t rows_ = 0;
  RowMap drop_rows_;  // where the batch's rows sit in its global batch (dropout's keys)
  // Activations (forward) and gradient buffers (backward).
  StepProfile* profile_ = nullptr;
  T* pos_table_ = nullptr;  // sinusoidal table when positions are not learned
  T *rope_cos_ = nullptr, *rope_sin_ = nullptr;  // pos_emb=rope: cos and sin per (position, pair)
  std::vector<T*> x_;       // residual stream: x_[l] enters layer l, x_[N] leaves the last one
  T *lnf_ = nullptr, *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *pooled_ = nullptr, *probs_ = nullptr;
  T* pair_ = nullptr;  // the dual encoder's head input (pair_features of pooled_)
  T *dx_ = nullptr, *dln_ = nullptr, *dh_ = nullptr, *dao_ = nullptr, *dqkv_ = nullptr;
  T *dpooled_ = nullptr, *dpair_ = nullptr;
  T *tmp_ = nullptr;   // a branch's output in the forward, its gradient in the backward
  T *hact_ = nullptr;  // drop(gelu(hpre)): computed in the forward, recomputed in the backward
  void* scratch_ = nullptr;  // the attention variants' scratch
  size_t workspace_bytes_ = 0;  // the backend's own (reserve_workspace)
};

}  // namespace lra
