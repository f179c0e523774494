// The encoder classifier's hyperparameters (LRA's names where LRA has one).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace lra {

struct ModelConfig {
  int vocab_size = 0;   // set by the task
  int num_classes = 0;  // set by the task
  int max_length = 0;   // tokens per example, CLS not counted
  int emb_dim = 64;
  int num_heads = 2;
  int num_layers = 2;
  int qkv_dim = 64;
  int mlp_dim = 128;
  float dropout_rate = 0.1f;
  float attention_dropout_rate = 0.1f;
  Pool pool = Pool::Cls;      // CLS prepends a learned vector inside the model
  bool learn_pos_emb = false; // false: LRA's sinusoidal table
  // Rotary position embeddings (config pos_emb=rope): queries and keys are rotated by their position
  // before the attention, and no absolute position is added to the embeddings.
  bool rope = false;
  bool qkv_bias = false;      // LRA's attention has no q/k/v bias
  double layernorm_eps = 1e-6;
  GeluKind gelu = GeluKind::Tanh;
  // Retrieval's dual encoder (set from the task's shape, Task::shape): an example is two documents
  // encoded by the same weights with no cross-attention, and the head reads the pair_features of the
  // two pooled vectors through Dense(mlp) -> ReLU -> Dense(mlp/2) -> ReLU -> Dense(classes), as LRA's
  // dual head does.
  bool dual = false;
  Interaction interaction = Interaction::Nli;
  std::string attn = "softmax";
  nlohmann::json attn_params = nlohmann::json::object();  // resolved hyperparameters of `attn`

  bool has_cls() const { return pool == Pool::Cls; }
  bool sinusoidal() const { return !learn_pos_emb && !rope; }  // LRA's absolute table is added
  int positions() const { return max_length + (has_cls() ? 1 : 0); }
  int head_dim() const { return qkv_dim / num_heads; }
  int docs() const { return dual ? 2 : 1; }  // documents (encoder sequences) per example
  // The widths of the head's dense layers, input first: {D, mlp, classes}, or for the dual encoder
  // {pair_blocks * D, mlp, mlp/2, classes}.
  std::vector<int> head_widths() const;
  // Throws with the offending field when the sizes do not fit together.
  void validate() const;
};

}  // namespace lra
