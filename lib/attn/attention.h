// The attention interface and registry.
//
// An attention variant maps packed per-head Q, K, V to an output of the same packing, with a
// hand-written backward. Adding a variant = one file that defines its AttnInfo + one line in
// registry.cpp: it then appears in `lra list attn`, the CLI's choices, `lra bench attn` and the attention
// test table (tests/attn_cases.h, under its defaults: the CPU tests and, once it has a GPU path, the GPU
// tests), and the parity test asks for its PyTorch fixture. Its GPU path is one .cu file that registers
// itself (lib/cuda/attention.h). Variants never
// see the model: they get row pointers, strides and the sequence layout, and declare up front how much
// memory they keep between forward and backward (`saved_bytes`) and how much scratch they need
// (`scratch_bytes`), so the model plans it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/hyperparams.h"
#include "core/init.h"
#include "core/rng.h"

namespace lra {

// Packed sequences: example b owns rows offsets[b] .. offsets[b+1]-1; position p of example b is row
// offsets[b] + p. key_mask (per row, 1 = attend, nullptr = all) hides keys. L_pad is the padded
// length the batch stands for (the task's max_length plus CLS); cosFormer uses it as M.
// offsets and key_mask are in host memory; dev_offsets and dev_key_mask are the same arrays in the
// memory of the device the variant runs on (the same pointers on the CPU; GPU kernels read these).
struct SeqBatch {
  int B = 0;
  const int32_t* offsets = nullptr;
  const uint8_t* key_mask = nullptr;
  int L_pad = 0;
  const int32_t* dev_offsets = nullptr;
  const uint8_t* dev_key_mask = nullptr;
  int64_t rows() const { return offsets[B]; }
  int length(int b) const { return offsets[b + 1] - offsets[b]; }
};

// Throws unless every example fits the variant's plan (max_len rows) and the batch's L_pad. Variants
// call it before their parallel loops, where an exception could not propagate.
void check_sequence_lengths(const SeqBatch& seq, int max_len);

// Q, K, V: row r of head h starts at q + r*ld_in + h*dk (v: h*dv); out likewise with ld_out.
template <class T>
struct AttnIO {
  const T* q = nullptr;
  const T* k = nullptr;
  const T* v = nullptr;
  int64_t ld_in = 0;
  T* out = nullptr;
  int64_t ld_out = 0;
};

// Gradients: dout is read, dq/dk/dv (same layout as q/k/v, stride ld_in) are overwritten.
template <class T>
struct AttnGrads {
  const T* dout = nullptr;
  T* dq = nullptr;
  T* dk = nullptr;
  T* dv = nullptr;
};

// Randomness of one call: attention dropout draws from philox(seed, stream, element); random features
// (Performer) are drawn from (seed, layer, the draw their redraw policy assigns to `step`). An evaluation
// passes the step of the last training step, so it sees the features that step trained with.
struct AttnStep {
  bool training = false;
  uint64_t seed = 0;
  uint64_t stream = 0;
  int64_t step = 0;
  RowMap rows{};  // where the call's rows sit in the global batch (dropout_element)
};

// A call's attention dropout on the CPU: the rate p (0 outside training), the scale 1/(1-p) of kept
// weights and the threshold an element's Philox word must reach to be kept (dropout_threshold).
template <class T>
struct DropoutDraw {
  float p;
  T scale;
  uint32_t thr;
  DropoutDraw(float rate, bool training)
      : p(training ? rate : 0.0f), scale(T(1) / (T(1) - T(p))), thr(dropout_threshold(p)) {}
};

struct AttnConfig {
  int heads = 1;
  int dk = 1;  // per-head query/key size
  int dv = 1;  // per-head value size
  int max_len = 1;   // longest example (rows) the variant will see, CLS included
  int threads = 1;   // most threads a call may use (scratch is planned per thread)
  int layer = 0;     // which encoder layer (random features differ per layer)
  float attention_dropout = 0.0f;
  nlohmann::json hp = nlohmann::json::object();  // the variant's resolved hyperparameters
};

// A learned weight a variant owns (Linformer's length projection, Synthesizer's logits, ...). The model
// declares it as "layers.<l>.attn.<name>" after the layer's projections, initialises it with the rest,
// trains it with AdamW and checkpoints it; the variant reads it and accumulates (+=) its gradient.
struct AttnParamSpec {
  std::string name;
  std::vector<int> shape;
  Init init = Init::Zeros;
  double scale = 0.0;
  int64_t size() const {
    int64_t n = 1;
    for (int s : shape) n *= s;
    return n;
  }
};

struct AttnInfo;
template <class T>
class Attention;
// Gives a variant made for `cfg` the learned weights its registry entry declares (AttnInfo::param_specs):
// every device's factory passes what it makes through here, so a variant never declares its own.
template <class T>
std::unique_ptr<Attention<T>> declare_params(const AttnInfo& info, const AttnConfig& cfg, std::unique_ptr<Attention<T>> a);

template <class T>
class Attention {
 public:
  virtual ~Attention() = default;
  // Bytes kept from forward to backward, and scratch needed by either pass, for a batch of at most
  // `B` examples and `rows` packed rows.
  virtual size_t saved_bytes(int B, int64_t rows) const = 0;
  virtual size_t scratch_bytes(int B, int64_t rows) const = 0;
  virtual void forward(const SeqBatch& seq, const AttnIO<T>& io, void* saved, void* scratch,
                       const AttnStep& step) = 0;
  // io.out holds the forward's output; `saved` what the forward kept.
  virtual void backward(const SeqBatch& seq, const AttnIO<T>& io, const AttnGrads<T>& g, const void* saved,
                        void* scratch, const AttnStep& step) = 0;
  // Fixes a variant's random features (m x dk, row-major; Performer's projection) instead of drawing
  // them, so a test can run the same features as another implementation. Throws for other variants.
  virtual void set_random_features(const std::vector<double>&) {
    LRA_FAIL("this attention variant draws no random features; only performer and performer-relu (features > 0) do");
  }
  // The learned weights of this variant (none for most), from its registry entry.
  const std::vector<AttnParamSpec>& param_specs() const { return specs_; }
  // Hands the variant the storage of its param_specs(), in order: values and gradients.
  void bind_params(std::vector<T*> values, std::vector<T*> grads) {
    LRA_CHECK(values.size() == specs_.size() && grads.size() == values.size(),
              "bind_params got {} values and {} gradients for {} parameters", values.size(), grads.size(),
              specs_.size());
    values_ = std::move(values);
    grads_ = std::move(grads);
  }

 protected:
  const T* param(size_t i) const { return values_.at(i); }
  T* param_grad(size_t i) const { return grads_.at(i); }

 private:
  template <class U>
  friend std::unique_ptr<Attention<U>> declare_params(const AttnInfo&, const AttnConfig&, std::unique_ptr<Attention<U>>);
  std::vector<AttnParamSpec> specs_;
  std::vector<T*> values_, grads_;
};

// Host storage for a variant's learned weights, initialised from (seed, parameter index) and bound:
// for tests and `lra bench attn`, which run a variant without a model.
template <class T>
struct AttnParamStore {
  std::vector<std::vector<T>> values, grads;
  void bind(Attention<T>& a, uint64_t seed) {
    std::vector<T*> v, g;
    const auto specs = a.param_specs();
    values.assign(specs.size(), {});
    grads.assign(specs.size(), {});
    for (size_t i = 0; i < specs.size(); ++i) {
      values[i].assign(static_cast<size_t>(specs[i].size()), T(0));
      grads[i].assign(values[i].size(), T(0));
      Rng rng(seed, (streams::kInit << 32) | i);
      fill_init(values[i].data(), specs[i].size(), specs[i].init, specs[i].scale, rng);
      v.push_back(values[i].data());
      g.push_back(grads[i].data());
    }
    a.bind_params(v, g);
  }
  void zero_grads() {
    for (auto& g : grads) std::fill(g.begin(), g.end(), T(0));
  }
};

class SparsePattern;  // attn/block_sparse.h

struct AttnInfo {
  std::string name;
  std::string summary;     // one line for `lra list attn`
  std::string complexity;  // time and memory in L
  bool uses_attention_dropout = false;
  // Why the variant has no causal mode ("" when it has one: then `causal` is among its params).
  std::string no_causal;
  std::vector<HyperParam> params;
  // The learned weights a configuration owns (empty function: none), whichever device runs it.
  std::function<std::vector<AttnParamSpec>(const AttnConfig&)> param_specs;
  // Block-sparse variants (local, sparse, longformer, bigbird): the pattern a configuration runs, so that
  // another backend's engine runs the same one; empty for the others.
  std::function<std::shared_ptr<const SparsePattern>(const AttnConfig&)> sparse_pattern;
  std::function<std::unique_ptr<Attention<float>>(const AttnConfig&)> make_f32;
  std::function<std::unique_ptr<Attention<double>>(const AttnConfig&)> make_f64;
};

// Completes `info` with the CPU factories of variant V; a variant with learned weights names its options
// type, whose param_specs(cfg) then declares them for every device.
template <template <class> class V>
AttnInfo make_attn_info(AttnInfo info) {
  info.make_f32 = [](const AttnConfig& c) { return std::unique_ptr<Attention<float>>(new V<float>(c)); };
  info.make_f64 = [](const AttnConfig& c) { return std::unique_ptr<Attention<double>>(new V<double>(c)); };
  return info;
}
template <template <class> class V, class Options>
AttnInfo make_attn_info(AttnInfo info) {
  info.param_specs = [](const AttnConfig& c) { return Options::parse(c).param_specs(c); };
  return make_attn_info<V>(std::move(info));
}

template <class T>
std::unique_ptr<Attention<T>> declare_params(const AttnInfo& info, const AttnConfig& cfg, std::unique_ptr<Attention<T>> a) {
  a->specs_ = info.param_specs ? info.param_specs(cfg) : std::vector<AttnParamSpec>{};
  return a;
}

const std::vector<AttnInfo>& attention_registry();
// Throws, listing the registered names, when `name` is unknown.
const AttnInfo& find_attention(const std::string& name);
std::vector<std::string> attention_names();
// The `causal` hyperparameter, the same for every variant that has a causal mode.
HyperParam causal_param();
// Whether the variant takes hyperparameter `key`.
inline bool has_hyperparam(const AttnInfo& info, const std::string& key) { return has_hyperparam(info.params, key); }
// The names of a variant's hyperparameters, for messages ("none" when it has none).
inline std::string hyperparam_list(const AttnInfo& info) { return hyperparam_list(info.params); }
// Resolves a variant's hyperparameters: defaults overridden by `given` (unknown keys throw).
nlohmann::json resolve_attention_params(const AttnInfo& info, const nlohmann::json& given);

template <class T>
std::unique_ptr<Attention<T>> make_attention(const std::string& name, const AttnConfig& cfg);

}  // namespace lra
