// Helpers for the GPU tests: device buffers, a Context, and the normalised mean squared error that
// every GPU result is judged by against the CPU backend.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda/check.h"
#include "cuda/context.h"
#include "test_util.h"

namespace lra::test {

// A device copy of a host vector; download() brings it back.
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    CUDA_CHECK(cudaMalloc(&ptr, sizeof(T) * (n > 0 ? n : 1)));
    CUDA_CHECK(cudaMemset(ptr, 0, sizeof(T) * (n > 0 ? n : 1)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) {
    CUDA_CHECK(cudaMemcpy(ptr, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(h.data(), ptr, sizeof(T) * n, cudaMemcpyDeviceToHost));
    return h;
  }
  operator T*() const { return ptr; }
};

// A stream and a cuBLAS handle on device 0, as the backend sets them up.
struct TestContext {
  cuda::Context ctx;
  TestContext() {
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreate(&ctx.stream));
    CUBLAS_CHECK(cublasCreate(&ctx.blas));
    CUBLAS_CHECK(cublasSetStream(ctx.blas, ctx.stream));
    CUBLAS_CHECK(cublasSetMathMode(ctx.blas, CUBLAS_PEDANTIC_MATH));
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    ctx.sm_count = p.multiProcessorCount;
    ctx.smem_per_block_optin = p.sharedMemPerBlockOptin;
  }
  ~TestContext() {
    cublasDestroy(ctx.blas);
    cudaStreamDestroy(ctx.stream);
  }
  operator const cuda::Context&() const { return ctx; }
};

// sum (gpu - cpu)^2 / sum cpu^2 (plain squared error when the reference is all zeros); NaN where
// either side holds one. Throws on different sizes or empty input (test_util.h, require_comparable).
inline double nmse(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  test::require_comparable(gpu.size(), cpu.size(), "nmse");
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double d = static_cast<double>(gpu[i]) - cpu[i];
    num += d * d;
    den += static_cast<double>(cpu[i]) * cpu[i];
  }
  return den > 0.0 ? num / den : num;
}

// Bit-for-bit equal (NaNs and signed zeros included).
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

inline bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace lra::test
