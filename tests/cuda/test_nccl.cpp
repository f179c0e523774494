// A run over two GPUs: `mpirun -np 2 lra run --device cuda`, one GPU per rank by local rank, gradients
// all-reduced with NCCL (bootstrapped over MPI), against the same run on one GPU. It needs two GPUs and
// Open MPI; elsewhere it reports skipped.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <string>

#include "mpi_util.h"
#include "test_util.h"

using namespace lra;
using namespace lra::test;

TEST_CASE("nccl: two GPUs train like one with the same global batch", "[cuda][nccl]") {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < 2) LRA_SKIP("needs two GPUs; this machine has " << count);
  if (const std::string why = mpi_missing(); !why.empty()) LRA_SKIP(why);
  TempDir d("nccl");
  for (const char* attn : {"softmax", "cosformer"}) {
    INFO(attn);
    const std::string one_args = tiny_run(d.path, "listops", attn, 8, std::string(attn) + "-one") + " --device cuda";
    const std::string two_args = tiny_run(d.path, "listops", attn, 8, std::string(attn) + "-two") + " --device cuda";
    const nlohmann::json one = record_of(run_lra(one_args));
    const nlohmann::json two = record_of(run_mpi("-np 2 " + std::string(LRA_BIN) + " " + two_args));
    check_like_one_process(one, two);
    REQUIRE(two["world"]["ranks"].size() == 2);
    CHECK(two["world"]["ranks"][0]["device"]["pci_bus_id"] != two["world"]["ranks"][1]["device"]["pci_bus_id"]);
  }
}
