// The CPU backend: lib/ops behind the Backend interface. devices.cpp puts it in the registry.
#include <chrono>
#include <cstring>

#include "backend/backend.h"

namespace lra {

namespace {

template <class T>
class CpuBackend final : public Backend<T> {
 public:
  Device device() const override { return Device::Cpu; }
  Allocator& allocator() override { return host_allocator(); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void fill_zero(T* p, int64_t n) override { std::memset(p, 0, sizeof(T) * static_cast<size_t>(n)); }
  void synchronize() override {}
  void timer_start() override { t0_ = std::chrono::steady_clock::now(); }
  double timer_stop() override {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
  }
  nlohmann::json device_info() const override { return nlohmann::json::object(); }
  std::unique_ptr<Attention<T>> make_attention(const std::string& name, const AttnConfig& cfg) override {
    return lra::make_attention<T>(name, cfg);
  }

  void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t N, int in, int out) override {
    lra::linear_forward(y, x, W, b, N, in, out);
  }
  void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t N, int in,
                       int out) override {
    lra::linear_backward(dx, dW, db, dy, x, W, N, in, out);
  }
  void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* g, const T* b, int64_t N, int C,
                         T eps) override {
    lra::layernorm_forward(y, mean, rstd, x, g, b, N, C, eps);
  }
  void layernorm_backward(T* dx, T* dg, T* db, const T* dy, const T* x, const T* mean, const T* rstd,
                          const T* g, int64_t N, int C) override {
    lra::layernorm_backward(dx, dg, db, dy, x, mean, rstd, g, N, C);
  }
  void gelu_forward(T* y, const T* x, int64_t n, GeluKind kind) override { lra::gelu_forward(y, x, n, kind); }
  void gelu_backward(T* dx, const T* dy, const T* x, int64_t n, GeluKind kind) override {
    lra::gelu_backward(dx, dy, x, n, kind);
  }
  void relu_forward(T* y, const T* x, int64_t n) override { lra::relu_forward(y, x, n); }
  void relu_backward(T* dx, const T* dy, const T* y, int64_t n) override { lra::relu_backward(dx, dy, y, n); }
  void dropout_forward(T* y, const T* x, int64_t n, float p, uint64_t seed, uint64_t stream,
                       uint64_t first) override {
    lra::dropout_forward(y, x, n, p, seed, stream, first);
  }
  void dropout_backward(T* dx, const T* dy, int64_t n, float p, uint64_t seed, uint64_t stream,
                        uint64_t first) override {
    lra::dropout_backward(dx, dy, n, p, seed, stream, first);
  }
  void residual_dropout_forward(T* out, const T* res, const T* h, int64_t n, float p, uint64_t seed,
                                uint64_t stream, uint64_t first) override {
    lra::residual_dropout_forward(out, res, h, n, p, seed, stream, first);
  }
  void embedding_forward(T* x, const int32_t* tokens, const int32_t* tok_offsets, const PackedRows& batch,
                         const T* wte, const T* pos, const T* cls, int D) override {
    lra::embedding_forward(x, tokens, tok_offsets, batch.row_offsets, batch.B, wte, pos, cls, D);
  }
  void embedding_backward(T* dwte, T* dpos, T* dcls, const T* dx, const int32_t* tokens, const int32_t* tok_offsets,
                          const PackedRows& batch, int D) override {
    lra::embedding_backward(dwte, dpos, dcls, dx, tokens, tok_offsets, batch.row_offsets, batch.B, D);
  }
  void pool_forward(T* out, const T* x, const PackedRows& batch, int D, Pool kind) override {
    lra::pool_forward(out, x, batch.row_offsets, batch.key_mask, batch.B, D, kind);
  }
  void rope_rotate(T* x, int64_t ld, const PackedRows& batch, int heads, int head_dim, const T* cos_table,
                   const T* sin_table, bool inverse) override {
    lra::rope_rotate(x, ld, batch.row_offsets, batch.B, heads, head_dim, cos_table, sin_table, inverse);
  }
  void pool_backward(T* dx, const T* dout, const T* x, const PackedRows& batch, int D, Pool kind) override {
    lra::pool_backward(dx, dout, x, batch.row_offsets, batch.key_mask, batch.B, D, kind);
  }
  void pair_features_forward(T* out, const T* pooled, int B, int D, Interaction kind) override {
    lra::pair_features_forward(out, pooled, B, D, kind);
  }
  void pair_features_backward(T* dpooled, const T* dout, const T* pooled, int B, int D,
                              Interaction kind) override {
    lra::pair_features_backward(dpooled, dout, pooled, B, D, kind);
  }
  double cross_entropy_forward(T* probs, T* losses, const T* logits, const int32_t* labels, int B,
                               int C) override {
    return lra::cross_entropy_forward(probs, losses, logits, labels, B, C);
  }
  void cross_entropy_backward(T* dlogits, const T* probs, const int32_t* labels, int B, int C) override {
    lra::cross_entropy_backward(dlogits, probs, labels, B, C);
  }
  void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const AdamW& hp, int64_t t) override {
    lra::adamw_update(p, g, m, v, n, hp, t);
  }
  double sum_squares(const T* x, int64_t n) override { return lra::sum_squares(x, n); }
  void scale_inplace(T* x, int64_t n, T s) override { lra::scale_inplace(x, n, s); }
  void allreduce_sum(T* x, int64_t n, Collective& world) override {
    if (world.size() > 1) world.allreduce_sum(x, n);
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

DeviceEntry cpu_device() {
  DeviceEntry e;
  e.device = Device::Cpu;
  e.make_f32 = [] { return std::unique_ptr<Backend<float>>(new CpuBackend<float>()); };
  e.make_f64 = [] { return std::unique_ptr<Backend<double>>(new CpuBackend<double>()); };
  e.has_attention = [](const std::string&) { return true; };
  return e;
}

}  // namespace lra
