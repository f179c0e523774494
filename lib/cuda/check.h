// Checked CUDA and cuBLAS calls: a failure throws lra::Error naming the statement, the file and line,
// the library's own error text and what to try.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/check.h"

namespace lra::cuda {

[[noreturn]] void fail_cuda(cudaError_t e, const char* stmt, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t s, const char* stmt, const char* file, int line);

}  // namespace lra::cuda

#define CUDA_CHECK(stmt)                                                             \
  do {                                                                               \
    const cudaError_t lra_cuda_err_ = (stmt);                                        \
    if (lra_cuda_err_ != cudaSuccess) ::lra::cuda::fail_cuda(lra_cuda_err_, #stmt, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: catches bad launch configurations at once (asynchronous faults surface at
// the next synchronising call, which is checked too).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(stmt)                                                                 \
  do {                                                                                     \
    const cublasStatus_t lra_cublas_st_ = (stmt);                                          \
    if (lra_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::lra::cuda::fail_cublas(lra_cublas_st_, #stmt, __FILE__, __LINE__);                 \
  } while (0)
