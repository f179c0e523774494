// The CUDA backend. One stream carries every op of a step in order; the host waits only where it needs
// a value back (the loss, the gradient norm, a download) or a timer's end. Device memory comes from
// cudaMalloc'd arena blocks planned up front (lib/core/arena.h), so the peak the arenas count is
// the device memory the run used for its tensors. A rank of a run over several processes takes the GPU
// of its local rank (modulo the GPUs it sees: one each under srun --gpus-per-task=1) and all-reduces the
// gradients with NCCL, bootstrapped over the run's MPI world as llm.c does: rank 0's ncclGetUniqueId is
// broadcast, every rank calls ncclCommInitRank.
#include "cuda/backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#ifdef LRA_WITH_NCCL
#include <nccl.h>
#endif

#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/ops.h"

namespace lra::cuda {

namespace {

class DeviceAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* p = nullptr;
    if (bytes == 0) return nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      LRA_FAIL("out of GPU memory: asked for {:.2f} GiB, {:.2f} GiB free of {:.2f} GiB ({}); lower --set "
               "batch_size (or max_length), or free the GPU from other processes",
               static_cast<double>(bytes) / (1 << 30), static_cast<double>(free_b) / (1 << 30),
               static_cast<double>(total_b) / (1 << 30), cudaGetErrorString(e));
    }
    return p;
  }
  void deallocate(void* p) override { cudaFree(p); }
  const char* where() const override { return "cuda"; }
};

class CudaBackend final : public Backend<float> {
 public:
  CudaBackend() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      cudaGetLastError();
      LRA_FAIL("--device cuda: no usable NVIDIA GPU was found ({}); check `nvidia-smi` and the driver, or run "
               "with --device cpu",
               e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports no CUDA device");
    }
    const int gpu = launcher_local_rank() % count;
    CUDA_CHECK(cudaSetDevice(gpu));
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, gpu));
    ctx_.device = gpu;
    ctx_.sm_count = p.multiProcessorCount;
    ctx_.smem_per_block_optin = p.sharedMemPerBlockOptin;
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&ctx_.blas));
    CUBLAS_CHECK(cublasSetStream(ctx_.blas, ctx_.stream));
    // fp32 products with fp32 accumulation: no TF32, so the GPU computes what the CPU does.
    CUBLAS_CHECK(cublasSetMathMode(ctx_.blas, CUBLAS_PEDANTIC_MATH));
    CUDA_CHECK(cudaMalloc(&reduce_, sizeof(double) * (kReduceBlocks + 1)));
    CUDA_CHECK(cudaMallocHost(&host_value_, sizeof(double)));
    CUDA_CHECK(cudaEventCreate(&t0_));
    CUDA_CHECK(cudaEventCreate(&t1_));
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(ctx_.stream);
#ifdef LRA_WITH_NCCL
    if (nccl_ != nullptr) ncclCommDestroy(nccl_);
#endif
    cudaFree(reduce_);
    cudaFree(workspace_);
    cudaFreeHost(host_value_);
    cudaEventDestroy(t0_);
    cudaEventDestroy(t1_);
    cublasDestroy(ctx_.blas);
    cudaStreamDestroy(ctx_.stream);
  }

  Device device() const override { return Device::Cuda; }
  Allocator& allocator() override { return alloc_; }
  // Pageable host memory: the copy has left the host buffer when the call returns, so callers may
  // free it at once; the stream keeps the order with the kernels around it.
  void upload(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  }
  void fill_zero(float* p, int64_t n) override {
    if (n > 0) CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(float) * static_cast<size_t>(n), ctx_.stream));
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }
  void timer_start() override { CUDA_CHECK(cudaEventRecord(t0_, ctx_.stream)); }
  double timer_stop() override {
    CUDA_CHECK(cudaEventRecord(t1_, ctx_.stream));
    CUDA_CHECK(cudaEventSynchronize(t1_));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, t0_, t1_));
    return ms;
  }
  nlohmann::json device_info() const override { return cuda::device_info(ctx_.device); }
  std::unique_ptr<Attention<float>> make_attention(const std::string& name, const AttnConfig& cfg) override {
    return cuda::make_attention(name, cfg, ctx_);
  }

  void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t N, int in, int out) override {
    cuda::linear_forward(y, x, W, b, N, in, out, ctx_);
  }
  void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const float* W, int64_t N,
                       int in, int out) override {
    cuda::linear_backward(dx, dW, db, dy, x, W, N, in, out, ctx_);
  }
  void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* g, const float* b,
                         int64_t N, int C, float eps) override {
    cuda::layernorm_forward(y, mean, rstd, x, g, b, N, C, eps, ctx_);
  }
  void layernorm_backward(float* dx, float* dg, float* db, const float* dy, const float* x, const float* mean,
                          const float* rstd, const float* g, int64_t N, int C) override {
    cuda::layernorm_backward(dx, dg, db, dy, x, mean, rstd, g, N, C, ctx_);
  }
  void gelu_forward(float* y, const float* x, int64_t n, GeluKind kind) override {
    cuda::gelu_forward(y, x, n, kind, ctx_);
  }
  void gelu_backward(float* dx, const float* dy, const float* x, int64_t n, GeluKind kind) override {
    cuda::gelu_backward(dx, dy, x, n, kind, ctx_);
  }
  void relu_forward(float* y, const float* x, int64_t n) override { cuda::relu_forward(y, x, n, ctx_); }
  void relu_backward(float* dx, const float* dy, const float* y, int64_t n) override {
    cuda::relu_backward(dx, dy, y, n, ctx_);
  }
  void dropout_forward(float* y, const float* x, int64_t n, float p, uint64_t seed, uint64_t stream,
                       uint64_t first) override {
    cuda::dropout_forward(y, x, n, p, seed, stream, first, ctx_);
  }
  void dropout_backward(float* dx, const float* dy, int64_t n, float p, uint64_t seed, uint64_t stream,
                        uint64_t first) override {
    cuda::dropout_backward(dx, dy, n, p, seed, stream, first, ctx_);
  }
  void residual_dropout_forward(float* out, const float* res, const float* h, int64_t n, float p, uint64_t seed,
                                uint64_t stream, uint64_t first) override {
    cuda::residual_dropout_forward(out, res, h, n, p, seed, stream, first, ctx_);
  }
  void embedding_forward(float* x, const int32_t* tokens, const int32_t* tok_offsets, const PackedRows& batch,
                         const float* wte, const float* pos, const float* cls, int D) override {
    cuda::embedding_forward(x, tokens, tok_offsets, batch.row_offsets, batch.B, wte, pos, cls, D, ctx_);
  }
  size_t reserve_workspace(int64_t max_rows) override {
    const size_t need = cuda::embedding_backward_workspace(max_rows);
    if (need > workspace_bytes_) {
      CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
      CUDA_CHECK(cudaFree(workspace_));
      workspace_ = nullptr;
      workspace_bytes_ = 0;
      CUDA_CHECK(cudaMalloc(&workspace_, need));
      workspace_bytes_ = need;
    }
    return workspace_bytes_;
  }
  void embedding_backward(float* dwte, float* dpos, float* dcls, const float* dx, const int32_t* tokens,
                          const int32_t* tok_offsets, const PackedRows& batch, int D) override {
    LRA_CHECK(cuda::embedding_backward_workspace(batch.rows) <= workspace_bytes_,
              "embedding_backward on the GPU: a batch of {} rows needs reserve_workspace({}) first", batch.rows,
              batch.rows);
    cuda::embedding_backward(dwte, dpos, dcls, dx, tokens, tok_offsets, batch.row_offsets, batch.B, D, batch.rows,
                             workspace_, ctx_);
  }
  void pool_forward(float* out, const float* x, const PackedRows& batch, int D, Pool kind) override {
    cuda::pool_forward(out, x, batch.row_offsets, batch.key_mask, batch.B, D, kind, ctx_);
  }
  void rope_rotate(float* x, int64_t ld, const PackedRows& batch, int heads, int head_dim, const float* cos_table,
                   const float* sin_table, bool inverse) override {
    cuda::rope_rotate(x, ld, batch.row_offsets, batch.B, batch.rows, heads, head_dim, cos_table, sin_table, inverse,
                      ctx_);
  }
  void pool_backward(float* dx, const float* dout, const float* x, const PackedRows& batch, int D, Pool kind) override {
    cuda::pool_backward(dx, dout, x, batch.row_offsets, batch.key_mask, batch.B, D, batch.rows, kind, ctx_);
  }
  void pair_features_forward(float* out, const float* pooled, int B, int D, Interaction kind) override {
    cuda::pair_features_forward(out, pooled, B, D, kind, ctx_);
  }
  void pair_features_backward(float* dpooled, const float* dout, const float* pooled, int B, int D,
                              Interaction kind) override {
    cuda::pair_features_backward(dpooled, dout, pooled, B, D, kind, ctx_);
  }
  double cross_entropy_forward(float* probs, float* losses, const float* logits, const int32_t* labels, int B,
                               int C) override {
    cuda::cross_entropy_forward(probs, losses, logits, labels, B, C, reduce_, ctx_);
    return read_value(reduce_);
  }
  void cross_entropy_backward(float* dlogits, const float* probs, const int32_t* labels, int B, int C) override {
    cuda::cross_entropy_backward(dlogits, probs, labels, B, C, ctx_);
  }
  void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamW& hp, int64_t t) override {
    cuda::adamw_update(p, g, m, v, n, hp, t, ctx_);
  }
  double sum_squares(const float* x, int64_t n) override {
    cuda::sum_squares(x, n, reduce_, reduce_ + 1, ctx_);
    return read_value(reduce_);
  }
  void scale_inplace(float* x, int64_t n, float s) override { cuda::scale_inplace(x, n, s, ctx_); }
  void allreduce_sum(float* x, int64_t n, Collective& world) override {
    if (world.size() == 1 || n == 0) return;
#ifdef LRA_WITH_NCCL
    if (nccl_ == nullptr) {
      ncclUniqueId id{};
      if (world.rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      world.broadcast(&id, sizeof id, 0);
      nccl_check(ncclCommInitRank(&nccl_, world.size(), id, world.rank()), "ncclCommInitRank");
    }
    nccl_check(ncclAllReduce(x, x, static_cast<size_t>(n), ncclFloat, ncclSum, nccl_, ctx_.stream), "ncclAllReduce");
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
#else
    std::vector<float> host(static_cast<size_t>(n));
    download(host.data(), x, sizeof(float) * host.size());
    world.allreduce_sum(host.data(), n);
    upload(x, host.data(), sizeof(float) * host.size());
#endif
  }

 private:
#ifdef LRA_WITH_NCCL
  static void nccl_check(ncclResult_t r, const char* what) {
    LRA_CHECK(r == ncclSuccess, "{} failed: {} ({}); check that every rank sees its GPU and that NCCL can reach "
              "the other ranks (NCCL_DEBUG=INFO says more)", what, ncclGetErrorString(r), ncclGetLastError(nullptr));
  }
  ncclComm_t nccl_ = nullptr;
#endif
  double read_value(const double* d) {
    CUDA_CHECK(cudaMemcpyAsync(host_value_, d, sizeof(double), cudaMemcpyDeviceToHost, ctx_.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    return *host_value_;
  }

  Context ctx_;
  DeviceAllocator alloc_;
  double* reduce_ = nullptr;      // [0]: a reduction's result, [1..]: its partial sums
  double* host_value_ = nullptr;  // pinned
  void* workspace_ = nullptr;     // reserve_workspace: the embedding gradient's sort
  size_t workspace_bytes_ = 0;
  cudaEvent_t t0_ = nullptr, t1_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend<float>> make_backend() { return std::make_unique<CudaBackend>(); }

namespace {
[[maybe_unused]] const bool registered = register_device({Device::Cuda, make_backend, nullptr, has_attention});
}  // namespace

nlohmann::json device_info(int device) {
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  int driver = 0, runtime = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  auto version = [](int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); };
  char bus[32] = {};
  CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof bus, device));
  return {{"gpu", p.name},
          {"ordinal", device},  // among the GPUs this process sees (a rank takes its local rank's)
          {"pci_bus_id", bus},
          {"gpu_memory_bytes", p.totalGlobalMem},
          {"compute_capability", fmt::format("{}.{}", p.major, p.minor)},
          {"multiprocessors", p.multiProcessorCount},
          {"cuda_driver", version(driver)},
          {"cuda_runtime", version(runtime)}};
}

}  // namespace lra::cuda
