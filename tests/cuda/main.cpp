// The GPU test executable's entry point: without a usable GPU it says so and exits with kSkipExitCode,
// which ctest reports as skipped (SKIP_RETURN_CODE), never as passed.
#define CATCH_CONFIG_RUNNER
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <catch2/catch.hpp>

#include "test_util.h"

int main(int argc, char** argv) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    fmt::print("lra_cuda_tests: no usable GPU ({}); skipped, nothing was run.\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found");
    return lra::test::kSkipExitCode;
  }
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, 0);
  fmt::print("lra_cuda_tests on {} (sm_{}{}, {:.1f} GiB)\n", p.name, p.major, p.minor,
             static_cast<double>(p.totalGlobalMem) / (1 << 30));
  return Catch::Session().run(argc, argv);
}
