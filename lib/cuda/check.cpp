#include "cuda/check.h"

#include <fmt/format.h>

namespace lra::cuda {

[[noreturn]] void fail_cuda(cudaError_t e, const char* stmt, const char* file, int line) {
  std::string hint;
  switch (e) {
    case cudaErrorMemoryAllocation: {
      size_t free_b = 0, total_b = 0;
      cudaGetLastError();
      cudaMemGetInfo(&free_b, &total_b);
      hint = fmt::format("the GPU has {:.2f} GiB free of {:.2f} GiB; lower --set batch_size or max_length, or "
                         "free the GPU from other processes",
                         static_cast<double>(free_b) / (1 << 30), static_cast<double>(total_b) / (1 << 30));
      break;
    }
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      hint = "no usable NVIDIA GPU or driver: check `nvidia-smi`, or run with --device cpu";
      break;
    case cudaErrorNoKernelImageForDevice:
      hint = "this build has no code for this GPU: reconfigure with -DLRA_CUDA_ARCHITECTURES=<its compute "
             "capability, e.g. 86> and rebuild";
      break;
    default:
      hint = "a kernel fault surfaces at the next checked call; rerun with CUDA_LAUNCH_BLOCKING=1 to find it";
  }
  throw Error(fmt::format("CUDA error {} ({}) in `{}` at {}:{}: {}", cudaGetErrorName(e), cudaGetErrorString(e),
                          stmt, file, line, hint));
}

[[noreturn]] void fail_cublas(cublasStatus_t s, const char* stmt, const char* file, int line) {
  const char* hint = s == CUBLAS_STATUS_ALLOC_FAILED
                         ? "cuBLAS could not allocate its workspace: lower --set batch_size or max_length"
                         : "check the shapes passed to it";
  throw Error(fmt::format("cuBLAS error {} ({}) in `{}` at {}:{}: {}", cublasGetStatusName(s),
                          cublasGetStatusString(s), stmt, file, line, hint));
}

}  // namespace lra::cuda
