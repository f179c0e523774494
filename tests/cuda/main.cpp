// The GPU test executable's entry point: without a usable GPU it says so and exits successfully, so a
// machine without one can run it by hand without a failure.
#define CATCH_CONFIG_RUNNER
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <catch2/catch.hpp>

int main(int argc, char** argv) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    fmt::print("lra_cuda_tests: no usable GPU ({}); nothing was run.\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found");
    return 0;
  }
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, 0);
  fmt::print("lra_cuda_tests on {} (sm_{}{}, {:.1f} GiB)\n", p.name, p.major, p.minor,
             static_cast<double>(p.totalGlobalMem) / (1 << 30));
  return Catch::Session().run(argc, argv);
}
