// The op interface a device fills in (ggml-style backend), and the registry devices join. The model
// and trainer talk only to Backend<T>; the CPU backend forwards to lib/ops (Eigen + OpenMP). The CUDA
// backend (lib/cuda, its own library) implements the same methods with the same names and arguments
// and registers itself with register_device; nothing at or above this layer knows it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "core/arena.h"
#include "core/collective.h"
#include "ops/ops.h"

namespace lra {

enum class Device { Cpu, Cuda };

// A packed batch as the embedding and pooling ops read it: row_offsets (B + 1) and key_mask (rows; nullptr
// = every key real) in the memory of the device that runs the op, with the host's B and row count, so that
// no device has to copy back to size its work.
struct PackedRows {
  const int32_t* row_offsets = nullptr;
  const uint8_t* key_mask = nullptr;
  int B = 0;
  int64_t rows = 0;
};
const char* device_name(Device d);
// Throws for unknown names, and for a device this build has no backend for (cuda on a CPU-only build).
Device parse_device(const std::string& s);
// Whether attention variant `attn` runs on `device` (every registered variant runs on the CPU); false
// for a device this build lacks.
bool has_device_path(const std::string& attn, Device device);

template <class T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Memory the arenas draw from, and transfers to and from it.
  virtual Allocator& allocator() = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(T* p, int64_t n) = 0;
  virtual void synchronize() = 0;
  // Times the work enqueued between the two calls (CUDA events on the GPU, a steady clock on the CPU);
  // timer_stop waits for that work and returns milliseconds.
  virtual void timer_start() = 0;
  virtual double timer_stop() = 0;
  // What a record says about the device: {} on the CPU (env_json covers it); the GPU's name, memory,
  // compute capability, driver and runtime versions on CUDA.
  virtual nlohmann::json device_info() const = 0;
  virtual std::unique_ptr<Attention<T>> make_attention(const std::string& name, const AttnConfig& cfg) = 0;
  // Makes the backend's own working memory cover batches of up to `max_rows` packed rows (the GPU's sort
  // for the embedding gradient; none on the CPU) and returns its bytes, which the caller counts as scratch.
  virtual size_t reserve_workspace(int64_t) { return 0; }

  // The ops of lib/ops/ops.h, same names, same arguments, same gradient convention.
  virtual void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t N, int in, int out) = 0;
  virtual void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t N, int in,
                               int out) = 0;
  virtual void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* g, const T* b, int64_t N, int C,
                                 T eps) = 0;
  virtual void layernorm_backward(T* dx, T* dg, T* db, const T* dy, const T* x, const T* mean, const T* rstd,
                                  const T* g, int64_t N, int C) = 0;
  virtual void gelu_forward(T* y, const T* x, int64_t n, GeluKind kind) = 0;
  virtual void gelu_backward(T* dx, const T* dy, const T* x, int64_t n, GeluKind kind) = 0;
  virtual void relu_forward(T* y, const T* x, int64_t n) = 0;
  virtual void relu_backward(T* dx, const T* dy, const T* y, int64_t n) = 0;
  // `first`: the Philox element of x[0] (ops.h, dropout_forward).
  virtual void dropout_forward(T* y, const T* x, int64_t n, float p, uint64_t seed, uint64_t stream,
                               uint64_t first) = 0;
  virtual void dropout_backward(T* dx, const T* dy, int64_t n, float p, uint64_t seed, uint64_t stream,
                                uint64_t first) = 0;
  virtual void residual_dropout_forward(T* out, const T* res, const T* h, int64_t n, float p, uint64_t seed,
                                        uint64_t stream, uint64_t first) = 0;
  virtual void embedding_forward(T* x, const int32_t* tokens, const int32_t* tok_offsets, const PackedRows& batch,
                                 const T* wte, const T* pos, const T* cls, int D) = 0;
  // Needs reserve_workspace(rows) with rows >= batch.rows first.
  virtual void embedding_backward(T* dwte, T* dpos, T* dcls, const T* dx, const int32_t* tokens,
                                  const int32_t* tok_offsets, const PackedRows& batch, int D) = 0;
  virtual void pool_forward(T* out, const T* x, const PackedRows& batch, int D, Pool kind) = 0;
  // ops/ops.h rope_rotate over the batch's sequences; the tables live on this device.
  virtual void rope_rotate(T* x, int64_t ld, const PackedRows& batch, int heads, int head_dim, const T* cos_table,
                           const T* sin_table, bool inverse) = 0;
  // x: the forward's input (Max pooling sends each column's gradient to the row holding its maximum).
  virtual void pool_backward(T* dx, const T* dout, const T* x, const PackedRows& batch, int D, Pool kind) = 0;
  virtual void pair_features_forward(T* out, const T* pooled, int B, int D, Interaction kind) = 0;
  virtual void pair_features_backward(T* dpooled, const T* dout, const T* pooled, int B, int D,
                                      Interaction kind) = 0;
  virtual double cross_entropy_forward(T* probs, T* losses, const T* logits, const int32_t* labels, int B,
                                       int C) = 0;
  virtual void cross_entropy_backward(T* dlogits, const T* probs, const int32_t* labels, int B, int C) = 0;
  virtual void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const AdamW& hp, int64_t t) = 0;
  virtual double sum_squares(const T* x, int64_t n) = 0;
  virtual void scale_inplace(T* x, int64_t n, T s) = 0;
  // Sums x (n elements of this device's memory) over the ranks of `world`, in place: the gradients of a
  // data-parallel step. The CPU hands its memory to the collective; the GPU uses NCCL where the build has
  // it (bootstrapped over `world`), and otherwise goes through host memory.
  virtual void allreduce_sum(T* x, int64_t n, Collective& world) = 0;
};

// Throws, saying what is missing, when `device` is not in this build or cannot run in T.
template <class T>
std::unique_ptr<Backend<T>> make_backend(Device device);

// One device of this build: how to make its backend and which attention variants it runs.
struct DeviceEntry {
  Device device = Device::Cpu;
  std::function<std::unique_ptr<Backend<float>>()> make_f32;
  std::function<std::unique_ptr<Backend<double>>()> make_f64;  // empty: the device runs in float only
  std::function<bool(const std::string& attn)> has_attention;
};

// Adds a device to the registry (the CPU is always there). Returns true, so a device's library registers
// itself with `static const bool registered = register_device(...)`; that library must then be linked
// whole (CMake's WHOLE_ARCHIVE), or the linker drops the unreferenced registration.
bool register_device(DeviceEntry entry);
// The registered devices, the CPU first.
const std::vector<DeviceEntry>& device_registry();

}  // namespace lra
