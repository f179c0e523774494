// The shared attention table (tests/attn_cases.h) on the GPU: every variant with a GPU path, under each
// setting of the CPU table, bidirectional and causal, against the CPU in float (gpu_attn_compare.h). One
// packed batch with lengths that cross the kernels' 64-row tiles and two empty examples, three heads of
// 16, with and without key masks; attention dropout in training mode where the variant has it, rerun for
// the same bits; and the same calls on NaN-filled memory between guard values. The per-variant files keep
// what is particular to a variant (head sizes per kernel, chunking, redraws, accumulation, its errors).
//
// Tolerances are those the per-variant files derive: nmse 1e-9 for exact softmax attention (softmax and
// the block-sparse patterns), 1e-8 for the others.
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <limits>
#include <string>
#include <vector>

#include "attn_cases.h"
#include "cuda/attention.h"
#include "gpu_attn_compare.h"
#include "gpu_util.h"

namespace lra::test {

namespace {

bool runs_on_gpu(const Variant& v) {
  // store_probs keeps P on the CPU only; the GPU's refusal is tested in test_attn_softmax.cpp.
  return cuda::has_attention(v.name) && !v.hp.value("store_probs", false);
}

double tolerance(const std::string& name) {
  for (const char* exact : {"softmax", "local", "sparse", "longformer", "bigbird"})
    if (name == exact) return 1e-9;
  return 1e-8;
}

AttnCase table_case(const Variant& v, int mask_stride) {
  AttnCase c;
  c.name = v.name;
  c.hp = v.hp;
  c.lengths = {5, 0, 70, 1, 0, 129};
  c.L_pad = 150;
  c.heads = 3;
  c.head_dim = 16;
  c.mask_stride = mask_stride;
  return c;
}

AttnCase with_dropout(AttnCase c) {
  c.dropout = 0.1f;
  c.training = true;
  return c;
}

// The case's GPU calls once more, on buffers filled with NaN (output, gradients, saved state and scratch,
// the scratch again before the backward), the output and gradients between guard values: every value must
// be written, finite and the CPU's, and no guard touched.
void require_guarded_writes(const AttnCase& c, const cuda::Context& ctx, double tol) {
  constexpr size_t kGuard = 256;
  constexpr float kSentinel = 12345.678f;
  const auto cpu = cpu_reference(c);
  GpuTwin gpu(*cpu, c.name, c.hp, ctx, c.make_gpu);
  auto guarded = [&](size_t n) {
    std::vector<float> b(kGuard + n + kGuard, kSentinel);
    std::fill(b.begin() + kGuard, b.end() - kGuard, std::numeric_limits<float>::quiet_NaN());
    return b;
  };
  DeviceBuffer<float> out(guarded(cpu->out.size())), dqkv(guarded(cpu->dqkv.size()));
  CUDA_CHECK(cudaMemset(gpu.saved.ptr, 0xFF, gpu.saved.n));
  CUDA_CHECK(cudaMemset(gpu.scratch.ptr, 0xFF, gpu.scratch.n));
  AttnIO<float> io = gpu.io();
  io.out = out.ptr + kGuard;
  gpu.attn->forward(gpu.seq(), io, gpu.saved, gpu.scratch, cpu->step);
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemset(gpu.scratch.ptr, 0xFF, gpu.scratch.n));
  AttnGrads<float> g;
  g.dout = gpu.dout;
  g.dq = dqkv.ptr + kGuard;
  g.dk = g.dq + cpu->Q;
  g.dv = g.dq + 2 * cpu->Q;
  gpu.attn->backward(gpu.seq(), io, g, gpu.saved, gpu.scratch, cpu->step);

  for (const auto* b : {&out, &dqkv}) {
    const std::vector<float> h = b->download();
    bool guards = true;
    for (size_t i = 0; i < kGuard; ++i) guards = guards && h[i] == kSentinel && h[h.size() - 1 - i] == kSentinel;
    CHECK(guards);
    const std::vector<float> inside(h.begin() + kGuard, h.end() - kGuard);
    CHECK(all_finite(inside));
    CHECK(nmse(inside, b == &out ? cpu->out : cpu->dqkv) < tol);
  }
}

}  // namespace

TEST_CASE("the attention table on the GPU matches the CPU", "[cuda][attn][table]") {
  TestContext tc;
  for (const Variant& v : all_attn_variants()) {
    if (!runs_on_gpu(v)) continue;
    for (int mask : {0, 3}) {
      INFO(v.label() << " mask_stride " << mask);
      require_close(table_case(v, mask), tc, tolerance(v.name));
    }
  }
}

TEST_CASE("the attention table on the GPU: attention dropout, the same bits on a rerun", "[cuda][attn][table]") {
  TestContext tc;
  for (const Variant& v : all_attn_variants()) {
    if (!runs_on_gpu(v) || !find_attention(v.name).uses_attention_dropout) continue;
    INFO(v.label());
    const AttnCase c = with_dropout(table_case(v, 3));
    require_close(c, tc, tolerance(v.name));
    require_same_bits(c, tc);
  }
}

TEST_CASE("the attention table on the GPU writes every output and nothing around it", "[cuda][attn][table]") {
  TestContext tc;
  for (const Variant& v : all_attn_variants()) {
    if (!runs_on_gpu(v)) continue;
    INFO(v.label());
    AttnCase c = table_case(v, 3);
    if (find_attention(v.name).uses_attention_dropout) c = with_dropout(c);
    require_guarded_writes(c, tc, tolerance(v.name));
  }
}

}  // namespace lra::test
