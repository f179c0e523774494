// Sparse Sinkhorn attention on the GPU (lib/cuda/sinkhorn.cu) against the CPU's (lib/attn/sinkhorn.cpp), by
// nmse of the output, of dQ, dK, dV and of every learned weight's gradient, on the same packed inputs, key
// mask, weights and step:
//   every option (sort_net mlp / linear x sort_activation sinkhorn / softmax x combine joint / sum) in blocks
//   of 4 with 3 Sinkhorn iterations at temperature 0.7, head sizes 16 and 32, no key mask, every 5th key
//   masked, and every key from row 3 on masked (blocks and whole examples without a real key: inactive
//   blocks, no sort); lengths {1, 7, 13, 64, 65, 130} packed in one batch (partial last blocks, a one-row
//   example), L_pad 150 (more blocks planned than any example has);
//   blocks of 1, 7 and 50 (LRA's), one iteration, max_blocks above what the examples need, dk = 64;
//   attention dropout in training mode (the CPU's Philox elements, so the same mask), joint and sum;
//   sort-net weights drawn at scale 0.5 (nonzero biases) besides their initialisation; the same bits on a
//   rerun, weight gradients that accumulate, and the errors of unsupported settings. Empty examples are the
//   shared table's (test_attn_table.cpp).
// Tolerance 1e-8 throughout. Both sides compute in float in different orders (cuBLAS and per-thread sums
// against Eigen), so the gap is float rounding (relative ~1e-7 per value, nmse ~1e-13), amplified by the
// cancellations of dS = P (G - D), of the Sinkhorn steps' backward dX = dY - exp(Y) sum(dY) and of the
// weight gradients' sums over every block of the batch: 1e-8 leaves four orders of magnitude for them. A
// sort-net ReLU whose input is within rounding of 0 could flip between the devices; that would show as an
// isolated dparams failure.
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "gpu_attn_compare.h"
#include "gpu_twin.h"

namespace lra::test {

namespace {

constexpr double kTol = 1e-8;
const std::vector<int> kLengths = {1, 7, 13, 64, 65, 130};
constexpr int kPad = 150;

nlohmann::json opts(const std::string& net, const std::string& act, const std::string& combine, int block = 4,
                    int iters = 3, double temp = 0.7) {
  return {{"block", block},         {"sort_net", net},      {"sort_activation", act},
          {"sinkhorn_iters", iters}, {"temperature", temp}, {"combine", combine}};
}

std::vector<nlohmann::json> all_options() {
  std::vector<nlohmann::json> v;
  for (const char* net : {"mlp", "linear"})
    for (const char* act : {"sinkhorn", "softmax"})
      for (const char* combine : {"joint", "sum"}) v.push_back(opts(net, act, combine));
  return v;
}

AttnCase make_case(nlohmann::json hp, int head_dim, int mask_stride, std::vector<int> lengths = kLengths,
                   int L_pad = kPad) {
  AttnCase c;
  c.name = "sinkhorn";
  c.hp = std::move(hp);
  c.lengths = std::move(lengths);
  c.L_pad = L_pad;
  c.head_dim = head_dim;
  c.mask_stride = mask_stride;
  return c;
}

// A CPU harness with random inputs, every 5th key from row 3 masked, and (weight_scale > 0) the sort net's
// weights drawn N(0, weight_scale^2) instead of their initialisation.
std::unique_ptr<AttnHarness<float>> harness(const nlohmann::json& hp, const std::vector<int>& lengths, int L_pad,
                                            double weight_scale, uint64_t seed) {
  auto h = std::make_unique<AttnHarness<float>>("sinkhorn", 2, 16, lengths, L_pad, hp);
  h->mask.assign(static_cast<size_t>(h->rows()), 1);
  for (int64_t r = 3; r < h->rows(); r += 5) h->mask[static_cast<size_t>(r)] = 0;
  h->qkv = cast<float>(randn(h->qkv.size(), seed));
  h->dout = cast<float>(randn(h->dout.size(), seed + 1));
  if (weight_scale > 0)
    for (size_t i = 0; i < h->params.values.size(); ++i) {
      const auto w = cast<float>(randn(h->params.values[i].size(), seed + 100 + i, weight_scale));
      std::copy(w.begin(), w.end(), h->params.values[i].begin());
    }
  h->step.seed = seed + 7;
  return h;
}

}  // namespace

TEST_CASE("gpu sinkhorn: every option, head size and key mask matches the CPU", "[cuda][attn][sinkhorn]") {
  TestContext tc;
  for (const auto& hp : all_options())
    for (int head_dim : {16, 32})
      for (int mask : {0, 5, 1}) {
        INFO("head_dim " << head_dim << ", mask_stride " << mask);
        require_close(make_case(hp, head_dim, mask), tc, kTol);
      }
}

TEST_CASE("gpu sinkhorn: block sizes, iterations, max_blocks and head size 64", "[cuda][attn][sinkhorn]") {
  TestContext tc;
  for (int block : {1, 7, 50})
    for (const char* combine : {"joint", "sum"})
      for (int mask : {0, 5}) {
        INFO("block " << block << ", mask_stride " << mask);
        require_close(make_case(opts("mlp", "sinkhorn", combine, block, 1, 1.0), 16, mask), tc, kTol);
        require_close(make_case(opts("linear", "softmax", combine, block, 1, 1.0), 16, mask), tc, kTol);
      }
  // LRA's block of 50 over ListOps-like lengths; 4 iterations; more sort outputs than blocks.
  require_close(make_case(opts("mlp", "sinkhorn", "joint", 50, 4, 0.5), 64, 5, {1, 49, 50, 51, 199, 260}, 300), tc,
                kTol);
  for (const char* net : {"mlp", "linear"}) {
    nlohmann::json hp = opts(net, "sinkhorn", "sum", 8, 2, 1.3);
    hp["max_blocks"] = 40;  // the examples need at most ceil(150 / 8) = 19
    INFO(net << " max_blocks 40");
    require_close(make_case(hp, 16, 5), tc, kTol);
  }
}

TEST_CASE("gpu sinkhorn: attention dropout in training mode", "[cuda][attn][sinkhorn]") {
  TestContext tc;
  for (const char* net : {"mlp", "linear"})
    for (const char* combine : {"joint", "sum"})
      for (int mask : {0, 5}) {
        INFO(net << " " << combine << ", mask_stride " << mask);
        AttnCase c = make_case(opts(net, "sinkhorn", combine), 16, mask);
        c.dropout = 0.25f;
        c.training = true;
        require_close(c, tc, kTol);
        c.training = false;  // evaluation: no dropout
        require_close(c, tc, kTol);
      }
}

TEST_CASE("gpu sinkhorn: drawn sort-net weights (nonzero biases) match the CPU", "[cuda][attn][sinkhorn]") {
  TestContext tc;
  for (const auto& hp : all_options()) {
    INFO(hp.dump());
    auto cpu = harness(hp, kLengths, kPad, 0.5, 41);
    GpuTwin gpu(*cpu, "sinkhorn", hp, tc);
    cpu->forward();
    cpu->backward();
    const auto o = gpu.forward(cpu->step), d = gpu.backward(cpu->step);
    CHECK(all_finite(o));
    CHECK(all_finite(d));
    CHECK(nmse(o, cpu->out) < kTol);
    CHECK(nmse(d, cpu->dqkv) < kTol);
    for (size_t i = 0; i < gpu.grads.size(); ++i) {
      INFO("learned weight " << gpu.attn->param_specs()[i].name);
      CHECK(nmse(gpu.grads[i]->download(), cpu->params.grads[i]) < kTol);
    }
  }
}

TEST_CASE("gpu sinkhorn: the same bits on a rerun; weight gradients accumulate", "[cuda][attn][sinkhorn]") {
  TestContext tc;
  for (const char* net : {"mlp", "linear"}) {
    INFO(net);
    const nlohmann::json hp = opts(net, "sinkhorn", "joint");
    auto cpu = harness(hp, kLengths, kPad, 0.5, 51);
    GpuTwin gpu(*cpu, "sinkhorn", hp, tc);
    const auto o1 = gpu.forward(cpu->step), d1 = gpu.backward(cpu->step);
    std::vector<std::vector<float>> g1;
    for (const auto& g : gpu.grads) g1.push_back(g->download());
    const auto o2 = gpu.forward(cpu->step), d2 = gpu.backward(cpu->step);
    CHECK(same_bits(o1, o2));
    CHECK(same_bits(d1, d2));  // dQ, dK, dV are overwritten
    for (size_t i = 0; i < g1.size(); ++i) {
      INFO("learned weight " << gpu.attn->param_specs()[i].name);
      std::vector<float> twice = g1[i];
      for (float& x : twice) x += x;  // the same bits again, added: exactly 2 g
      CHECK(same_bits(gpu.grads[i]->download(), twice));
    }
  }
}

TEST_CASE("gpu sinkhorn: unsupported settings are errors at construction", "[cuda][attn][sinkhorn]") {
  TestContext tc;
  AttnConfig ac;
  ac.dk = ac.dv = 16;
  ac.max_len = 100;
  ac.hp = resolve_attention_params(find_attention("sinkhorn"), nlohmann::json::object());
  ac.heads = 70000;
  CHECK_THROWS_WITH(cuda::make_attention("sinkhorn", ac, tc), Catch::Contains("1 .. 65535 heads"));
  ac.heads = 2;
  // The CPU's checks and messages.
  ac.hp = resolve_attention_params(find_attention("sinkhorn"), {{"max_blocks", 1}});
  CHECK_THROWS_WITH(cuda::make_attention("sinkhorn", ac, tc), Catch::Contains("more than max_blocks=1"));
  ac.hp = resolve_attention_params(find_attention("sinkhorn"), {{"block", 4096}});
  ac.heads = 4096;
  ac.dk = ac.dv = 512;  // 4096 x 1024 x 4096 floats per block row
  CHECK_THROWS_WITH(cuda::make_attention("sinkhorn", ac, tc), Catch::Contains("32-bit leading dimension"));
}

}  // namespace lra::test
