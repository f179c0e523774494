// Runs one attention variant on the CPU (tests/attn_harness.h, float) and on the GPU on the same packed
// random inputs, padding mask, hyperparameters, learned weights and step, and reports the normalised
// mean squared error of the GPU's output and gradients against the CPU's.
#pragma once

#include <algorithm>
#include <memory>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "gpu_twin.h"

namespace lra::test {

struct AttnCompare {
  double out = 0, dq = 0, dk = 0, dv = 0, dparams = 0;  // nmse, worst over learned weights for dparams
  bool finite = true;
  // The GPU's output, dQKV and learned weights' gradients as computed, for bit-for-bit reruns: the CPU
  // reference need not repeat its own bits (Eigen's vector paths depend on where buffers are allocated).
  std::vector<float> gpu;
};

struct AttnCase {
  std::string name;
  nlohmann::json hp = nlohmann::json::object();
  std::vector<int> lengths;
  int L_pad = 0;
  int heads = 2;
  int head_dim = 16;
  int mask_stride = 0;  // hide every mask_stride-th key from row 3 on (0 = no mask)
  float dropout = 0.0f;
  bool training = false;
  uint64_t seed = 1;
  double weight_scale = 0.0;  // > 0: learned weights drawn N(0, scale^2) instead of their initialisation
  int backward_passes = 1;  // GPU backward calls: learned weights' gradients accumulate, so dparams is
                            // compared with this many times the CPU's
  // Builds the GPU variant in place of cuda::make_attention (for a factory's own knobs); unset: the registry's.
  GpuTwin::Factory make_gpu;
};

// The CPU side of a case: its inputs, mask, step and learned weights, forward and backward already run.
inline std::unique_ptr<AttnHarness<float>> cpu_reference(const AttnCase& c) {
  auto h = std::make_unique<AttnHarness<float>>(c.name, c.heads, c.head_dim, c.lengths, c.L_pad, c.hp, c.dropout);
  AttnHarness<float>& cpu = *h;
  if (c.mask_stride > 0) {
    cpu.mask.assign(static_cast<size_t>(cpu.rows()), 1);
    for (int64_t r = 3; r < cpu.rows(); r += c.mask_stride) cpu.mask[static_cast<size_t>(r)] = 0;
  }
  auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  cpu.qkv = to_float(randn(cpu.qkv.size(), c.seed));
  cpu.dout = to_float(randn(cpu.dout.size(), c.seed + 1));
  cpu.step.training = c.training;
  cpu.step.seed = c.seed + 7;
  cpu.step.stream = 12345;
  cpu.step.step = 3;
  if (c.weight_scale > 0)
    for (size_t i = 0; i < cpu.params.values.size(); ++i) {
      const auto w = randn(cpu.params.values[i].size(), c.seed + 100 + i, c.weight_scale);
      std::copy(w.begin(), w.end(), cpu.params.values[i].begin());
    }
  cpu.forward();
  cpu.backward();
  return h;
}

inline AttnCompare compare_attention(const AttnCase& c, const cuda::Context& ctx) {
  const auto reference = cpu_reference(c);
  const AttnHarness<float>& cpu = *reference;
  GpuTwin gpu(cpu, c.name, c.hp, ctx, c.make_gpu);
  const auto o = gpu.forward(cpu.step);
  std::vector<float> d;
  for (int pass = 0; pass < c.backward_passes; ++pass) d = gpu.backward(cpu.step);
  const int64_t R = cpu.rows();
  const int Q = c.heads * c.head_dim;

  AttnCompare r;
  r.finite = all_finite(o) && all_finite(d);
  r.out = nmse(o, cpu.out);
  // Split dqkv into its q, k and v columns.
  auto part = [&](const std::vector<float>& v, int which) {
    std::vector<float> p;
    p.reserve(static_cast<size_t>(R) * Q);
    for (int64_t row = 0; row < R; ++row)
      for (int j = 0; j < Q; ++j) p.push_back(v[static_cast<size_t>(row * 3 * Q + which * Q + j)]);
    return p;
  };
  r.dq = nmse(part(d, 0), part(cpu.dqkv, 0));
  r.dk = nmse(part(d, 1), part(cpu.dqkv, 1));
  r.dv = nmse(part(d, 2), part(cpu.dqkv, 2));
  r.gpu = o;
  r.gpu.insert(r.gpu.end(), d.begin(), d.end());
  for (size_t i = 0; i < gpu.grads.size(); ++i) {
    std::vector<float> want = cpu.params.grads[i];
    for (float& x : want) x *= static_cast<float>(c.backward_passes);
    const auto got = gpu.grads[i]->download();
    r.dparams = std::max(r.dparams, nmse(got, want));
    r.gpu.insert(r.gpu.end(), got.begin(), got.end());
  }
  return r;
}

// The usual bar: every output and gradient within `tol` nmse of the CPU's, and finite.
inline void require_close(const AttnCase& c, const cuda::Context& ctx, double tol = 1e-9) {
  const AttnCompare r = compare_attention(c, ctx);
  INFO(c.name << " hp=" << c.hp.dump() << " nmse out=" << r.out << " dq=" << r.dq << " dk=" << r.dk
               << " dv=" << r.dv << " dparams=" << r.dparams);
  CHECK(r.finite);
  CHECK(r.out < tol);
  CHECK(r.dq < tol);
  CHECK(r.dk < tol);
  CHECK(r.dv < tol);
  CHECK(r.dparams < tol);
}

// Determinism: two runs of the case give the GPU's output and gradients bit for bit.
inline void require_same_bits(const AttnCase& c, const cuda::Context& ctx) {
  const AttnCompare a = compare_attention(c, ctx), b = compare_attention(c, ctx);
  INFO(c.name << " hp=" << c.hp.dump());
  CHECK(same_bits(a.gpu, b.gpu));
}

}  // namespace lra::test
