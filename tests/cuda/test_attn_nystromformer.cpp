// Nystromformer on the GPU (lib/cuda/nystromformer.cu) against the CPU's (lib/attn/nystromformer.cpp), by nmse of
// the output, dQ, dK, dV and the conv weight's gradient on the same packed inputs:
//   lengths {1, 7, 64, 65, 130} packed in one batch with L_pad 160 (beyond the longest, so max_len = 160). With 16
//   landmarks the 1- and 7-row examples take the exact fallback and 64, 65 = 4*16+1 and 130 = 8*16+2 rows split
//   into uneven segments; with 64 landmarks 64 rows is still the fallback and 65 rows the first with landmarks
//   (segments of 1 and 2 rows); 1 landmark (A is 1 x 1); 200 landmarks (more than max_len: nothing saved, every
//   example the fallback); pinv_init example and batch; pinv_iters 0, 6 and 12; conv_kernel 0, 1, 3, 5, 35
//   (longer than the short examples); head sizes 16 and 32, and 4 heads;
//   key masks: none, every 5th key from row 3 on, every key from row 3 on (then example 1 keeps 2 rows and the
//   examples after it are all padding: n = 0, zero output and gradients);
//   an empty example (0 rows) between others; the conv weight's gradient accumulating (+=) over two backward
//   passes while dQ, dK, dV are overwritten; scratch, saved memory and the outputs filled with NaN before the
//   run (nothing unwritten is read, every output element is written); the same bits on a rerun.
// Nystromformer has no causal mode and no attention weights to drop, so neither is in the grid.
//
// Tolerance 1e-8, as for the kernelised variants. Both sides compute in float with different summation orders
// (cuBLAS's blocked products and warp/block reductions against Eigen's), so the gap is float rounding, amplified
// by the pseudo-inverse iteration (A, a softmax of landmark means, is close to rank one for random inputs, and the
// iteration multiplies its small singular directions by up to (13/4)^iters) and by the cancellations in dQ, dK.
// Measured on the CPU, float against double on this grid (same inputs and weights): nmse <= 2e-13 for the output
// and <= 1e-12 for the gradients with 6 iterations or none, and with 12 iterations up to 1e-11 (output) and
// 2e-10 (dQ, dK). Two float implementations differ by about twice that, so 1e-8 leaves a margin of about 25 on
// the worst case and of thousands on the rest.
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "gpu_attn_compare.h"

namespace lra::test {

namespace {

constexpr double kTol = 1e-8;
const std::vector<int> kLengths = {1, 7, 64, 65, 130};
constexpr int kPad = 160;

AttnCase make_case(nlohmann::json hp, int head_dim, int mask_stride, std::vector<int> lengths = kLengths,
                   int L_pad = kPad, int heads = 2) {
  AttnCase c;
  c.name = "nystromformer";
  c.hp = std::move(hp);
  c.lengths = std::move(lengths);
  c.L_pad = L_pad;
  c.heads = heads;
  c.head_dim = head_dim;
  c.mask_stride = mask_stride;
  return c;
}

// Every (head size, mask) combination of one setting.
void check_grid(const nlohmann::json& hp, const cuda::Context& ctx) {
  for (int head_dim : {16, 32})
    for (int mask : {0, 5, 1}) {
      INFO("head_dim " << head_dim << ", mask_stride " << mask);
      require_close(make_case(hp, head_dim, mask), ctx, kTol);
    }
}

void fill_nan(void* p, size_t bytes) { CUDA_CHECK(cudaMemset(p, 0xff, bytes)); }  // 0xffffffff is a NaN

}  // namespace

TEST_CASE("gpu nystromformer: landmarks and the fallback in one batch", "[cuda][attn][nystromformer]") {
  TestContext tc;
  check_grid({{"landmarks", 16}, {"conv_kernel", 3}}, tc);
  check_grid({{"landmarks", 64}}, tc);  // the defaults otherwise: 6 iterations, 35 taps, pinv_init example
}

TEST_CASE("gpu nystromformer: pinv_init=batch", "[cuda][attn][nystromformer]") {
  TestContext tc;
  check_grid({{"landmarks", 16}, {"conv_kernel", 0}, {"pinv_init", "batch"}}, tc);
  check_grid({{"landmarks", 64}, {"pinv_init", "batch"}}, tc);
}

TEST_CASE("gpu nystromformer: iterations, filters and landmark counts", "[cuda][attn][nystromformer]") {
  TestContext tc;
  check_grid({{"landmarks", 7}, {"pinv_iters", 0}, {"conv_kernel", 5}}, tc);
  check_grid({{"landmarks", 32}, {"pinv_iters", 12}, {"conv_kernel", 1}}, tc);
  check_grid({{"landmarks", 1}, {"conv_kernel", 3}, {"pinv_init", "batch"}}, tc);
  check_grid({{"landmarks", 200}}, tc);  // more landmarks than max_len: the exact fallback everywhere
}

TEST_CASE("gpu nystromformer: four heads and an empty example", "[cuda][attn][nystromformer]") {
  TestContext tc;
  for (const char* init : {"example", "batch"})
    for (int mask : {0, 5}) {
      INFO("pinv_init " << init << ", mask_stride " << mask);
      const nlohmann::json hp = {{"landmarks", 8}, {"conv_kernel", 5}, {"pinv_init", init}};
      require_close(make_case(hp, 16, mask, {5, 0, 70, 0, 1, 33}, 70, 4), tc, kTol);
    }
}

TEST_CASE("gpu nystromformer: NaN-filled memory, accumulated weight gradients and the same bits on a rerun",
          "[cuda][attn][nystromformer]") {
  TestContext tc;
  for (const char* init : {"example", "batch"}) {
    INFO("pinv_init " << init);
    const nlohmann::json hp = {{"landmarks", 16}, {"conv_kernel", 7}, {"pinv_init", init}};
    AttnHarness<float> cpu("nystromformer", 2, 16, kLengths, kPad, hp);
    cpu.mask.assign(static_cast<size_t>(cpu.rows()), 1);
    for (int64_t r = 3; r < cpu.rows(); r += 5) cpu.mask[static_cast<size_t>(r)] = 0;
    cpu.qkv = cast<float>(randn(cpu.qkv.size(), 51));
    cpu.dout = cast<float>(randn(cpu.dout.size(), 52));
    cpu.forward();
    cpu.backward();

    AttnConfig ac;
    ac.heads = cpu.H;
    ac.dk = ac.dv = cpu.dk;
    ac.max_len = kPad;
    ac.hp = resolve_attention_params(find_attention("nystromformer"), hp);
    auto gpu = cuda::make_attention("nystromformer", ac, tc);
    const int B = static_cast<int>(kLengths.size());
    const int64_t R = cpu.rows();
    DeviceBuffer<int32_t> offsets(cpu.offsets);
    DeviceBuffer<uint8_t> mask(cpu.mask);
    DeviceBuffer<float> qkv(cpu.qkv), out(cpu.out.size()), dout(cpu.dout), dqkv(cpu.dqkv.size());
    DeviceBuffer<char> saved(gpu->saved_bytes(B, R)), scratch(gpu->scratch_bytes(B, R));
    DeviceBuffer<float> w(cpu.params.values[0]), dw(cpu.params.values[0].size());
    gpu->bind_params({w.ptr}, {dw.ptr});
    fill_nan(saved.ptr, saved.n);
    fill_nan(scratch.ptr, scratch.n);
    fill_nan(out.ptr, sizeof(float) * out.n);
    fill_nan(dqkv.ptr, sizeof(float) * dqkv.n);

    SeqBatch s = cpu.seq();
    s.dev_offsets = offsets;
    s.dev_key_mask = mask;
    const int Q = cpu.Q;
    AttnIO<float> io;
    io.q = qkv;
    io.k = qkv.ptr + Q;
    io.v = qkv.ptr + 2 * Q;
    io.ld_in = 3 * Q;
    io.out = out;
    io.ld_out = Q;
    AttnGrads<float> g;
    g.dout = dout;
    g.dq = dqkv;
    g.dk = dqkv.ptr + Q;
    g.dv = dqkv.ptr + 2 * Q;

    gpu->forward(s, io, saved, scratch, cpu.step);
    const auto o1 = out.download();
    gpu->backward(s, io, g, saved, scratch, cpu.step);
    const auto d1 = dqkv.download(), w1 = dw.download();
    CHECK(all_finite(o1));
    CHECK(all_finite(d1));
    CHECK(nmse(o1, cpu.out) < kTol);
    CHECK(nmse(d1, cpu.dqkv) < kTol);
    CHECK(nmse(w1, cpu.params.grads[0]) < kTol);

    fill_nan(scratch.ptr, scratch.n);
    gpu->forward(s, io, saved, scratch, cpu.step);
    const auto o2 = out.download();
    gpu->backward(s, io, g, saved, scratch, cpu.step);
    const auto d2 = dqkv.download(), w2 = dw.download();
    CHECK(same_bits(o1, o2));
    CHECK(same_bits(d1, d2));  // overwritten, not accumulated
    std::vector<float> twice(w1.size());
    for (size_t i = 0; i < w1.size(); ++i) twice[i] = w1[i] + w1[i];
    CHECK(same_bits(w2, twice));  // accumulated: the same gradient added again
  }
}

TEST_CASE("gpu nystromformer: hyperparameter errors are the CPU's", "[cuda][attn][nystromformer]") {
  TestContext tc;
  auto make = [&](const nlohmann::json& hp) {
    AttnConfig ac;
    ac.heads = 2;
    ac.dk = ac.dv = 8;
    ac.max_len = 32;
    ac.hp = resolve_attention_params(find_attention("nystromformer"), hp);
    return cuda::make_attention("nystromformer", ac, tc);
  };
  CHECK_THROWS_WITH(make({{"landmarks", 0}}), Catch::Contains("landmarks must be at least 1, got 0"));
  CHECK_THROWS_WITH(make({{"pinv_iters", -1}}), Catch::Contains("pinv_iters must be 0 or more, got -1"));
  CHECK_THROWS_WITH(make({{"conv_kernel", 4}}), Catch::Contains("conv_kernel must be odd"));
  CHECK_THROWS_WITH(make({{"pinv_init", "global"}}), Catch::Contains("pinv_init must be 'example'"));
  const auto a = make({{"conv_kernel", 9}});
  REQUIRE(a->param_specs().size() == 1);
  CHECK(a->param_specs()[0].shape == std::vector<int>{2, 9});
  CHECK(make({{"conv_kernel", 0}})->param_specs().empty());
}

}  // namespace lra::test
