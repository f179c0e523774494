// Every GPU attention variant refuses a batch whose offsets or key mask exist only in host memory, before
// any kernel could read a host pointer as a device one, with a message that names the missing field.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "gpu_twin.h"

namespace lra::test {

TEST_CASE("GPU attention refuses a batch without its device copies", "[cuda][attn]") {
  TestContext ctx;
  const std::vector<int32_t> offsets = {0, 3, 7};
  const std::vector<uint8_t> mask(7, 1);
  DeviceBuffer<int32_t> dev_offsets(offsets);
  for (const std::string& name : cuda::attention_names()) {
    INFO(name);
    auto gpu = small_gpu_attention(name, ctx);
    SeqBatch s;
    s.B = 2;
    s.offsets = offsets.data();
    s.L_pad = 4;
    s.dev_offsets = dev_offsets;
    s.key_mask = mask.data();
    AttnIO<float> io;
    AttnGrads<float> g;
    AttnStep step;
    REQUIRE_THROWS_WITH(gpu->forward(s, io, nullptr, nullptr, step), Catch::Contains("dev_key_mask"));
    REQUIRE_THROWS_WITH(gpu->backward(s, io, g, nullptr, nullptr, step), Catch::Contains("dev_key_mask"));
    if (name == "synthesizer") continue;  // it reads the host's offsets only
    s.key_mask = nullptr;
    s.dev_offsets = nullptr;
    REQUIRE_THROWS_WITH(gpu->forward(s, io, nullptr, nullptr, step), Catch::Contains("dev_offsets"));
    REQUIRE_THROWS_WITH(gpu->backward(s, io, g, nullptr, nullptr, step), Catch::Contains("dev_offsets"));
  }
}

}  // namespace lra::test
