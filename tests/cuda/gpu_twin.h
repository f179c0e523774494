// The GPU twin of a CPU attention harness (tests/attn_harness.h): the same variant and configuration on
// the GPU, with the harness's inputs and learned weights copied to the device, for tests that drive the
// forward and backward calls themselves (sequences of steps, reruns, accumulation).
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn_harness.h"
#include "cuda/attention.h"
#include "gpu_util.h"

namespace lra::test {

struct GpuTwin {
  const AttnHarness<float>& cpu;
  std::unique_ptr<Attention<float>> attn;
  DeviceBuffer<int32_t> offsets;
  DeviceBuffer<uint8_t> mask;
  DeviceBuffer<float> qkv, out, dout, dqkv;
  DeviceBuffer<char> saved, scratch;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> values, grads;

  // Builds the GPU variant in place of cuda::make_attention (for a factory's own knobs).
  using Factory = std::function<std::unique_ptr<Attention<float>>(const AttnConfig&, const cuda::Context&)>;

  // `make` unset: the registry's factory.
  GpuTwin(const AttnHarness<float>& h, const std::string& name, const nlohmann::json& hp, const cuda::Context& ctx,
          const Factory& make = nullptr)
      : cpu(h),
        attn(make ? make(config(h, name, hp), ctx) : cuda::make_attention(name, config(h, name, hp), ctx)),
        offsets(h.offsets),
        mask(h.mask.empty() ? std::vector<uint8_t>(1, 1) : h.mask),
        qkv(h.qkv),
        out(h.out.size()),
        dout(h.dout),
        dqkv(h.dqkv.size()),
        saved(attn->saved_bytes(B(), h.rows()) + 64),
        scratch(attn->scratch_bytes(B(), h.rows()) + 64) {
    std::vector<float*> v, g;
    for (const auto& w : h.params.values) {
      values.push_back(std::make_unique<DeviceBuffer<float>>(w));
      grads.push_back(std::make_unique<DeviceBuffer<float>>(w.size()));
      v.push_back(values.back()->ptr);
      g.push_back(grads.back()->ptr);
    }
    attn->bind_params(v, g);
  }

  static AttnConfig config(const AttnHarness<float>& h, const std::string& name, const nlohmann::json& hp) {
    AttnConfig ac;
    ac.heads = h.H;
    ac.dk = ac.dv = h.dk;
    int longest = 1;
    for (size_t b = 0; b + 1 < h.offsets.size(); ++b) longest = std::max(longest, h.offsets[b + 1] - h.offsets[b]);
    ac.max_len = std::max(longest, h.L_pad);
    ac.attention_dropout = h.attention_dropout;
    ac.hp = resolve_attention_params(find_attention(name), hp);
    return ac;
  }
  int B() const { return static_cast<int>(cpu.offsets.size()) - 1; }
  SeqBatch seq() const {
    SeqBatch s = cpu.seq();
    s.dev_offsets = offsets;
    s.dev_key_mask = cpu.mask.empty() ? nullptr : mask.ptr;
    return s;
  }
  AttnIO<float> io() const {
    AttnIO<float> a;
    a.q = qkv;
    a.k = qkv.ptr + cpu.Q;
    a.v = qkv.ptr + 2 * cpu.Q;
    a.ld_in = 3 * cpu.Q;
    a.out = out;
    a.ld_out = cpu.Q;
    return a;
  }
  std::vector<float> forward(const AttnStep& step) {
    attn->forward(seq(), io(), saved, scratch, step);
    return out.download();
  }
  // dQ, dK, dV (overwritten); the weight gradients accumulate over calls.
  std::vector<float> backward(const AttnStep& step) {
    AttnGrads<float> g;
    g.dout = dout;
    g.dq = dqkv;
    g.dk = dqkv.ptr + cpu.Q;
    g.dv = dqkv.ptr + 2 * cpu.Q;
    attn->backward(seq(), io(), g, saved, scratch, step);
    return dqkv.download();
  }
};

// A variant alone on the GPU, with its default hyperparameters: 2 heads of 16 columns, max_len 8.
inline std::unique_ptr<Attention<float>> small_gpu_attention(const std::string& name, const cuda::Context& ctx) {
  AttnConfig ac;
  ac.heads = 2;
  ac.dk = ac.dv = 16;
  ac.max_len = 8;
  ac.hp = resolve_attention_params(find_attention(name), nlohmann::json::object());
  return cuda::make_attention(name, ac, ctx);
}

}  // namespace lra::test
