// The whole model on the GPU against the CPU backend: one training step (logits, loss, every parameter's
// gradient) and ten AdamW steps of loss trajectory, for every variant with a GPU path, with dropout,
// attention dropout, padding masks and examples of different lengths.
#include <catch2/catch.hpp>
#include <cmath>

#include "backend/backend.h"
#include "cuda/attention.h"
#include "gpu_util.h"
#include "model/model.h"
#include "test_util.h"
#include "train/optimizer.h"

using namespace lra;
using namespace lra::test;

namespace {

ModelConfig small_config(const std::string& attn, Pool pool, bool causal) {
  ModelConfig c;
  c.vocab_size = 20;
  c.num_classes = 10;
  c.max_length = 150;
  c.emb_dim = 64;
  c.num_heads = 2;
  c.num_layers = 2;
  c.qkv_dim = 64;
  c.mlp_dim = 128;
  c.dropout_rate = 0.1f;
  c.attention_dropout_rate = 0.1f;
  c.pool = pool;
  c.attn = attn;
  nlohmann::json given = nlohmann::json::object();
  if (causal) given["causal"] = true;
  c.attn_params = resolve_attention_params(find_attention(attn), given);
  return c;
}

// Four examples; with pairs, four more documents for their second halves.
Batch batch_for(int step, bool pairs = false) {
  Batch b;
  b.B = 4;
  b.docs = pairs ? 2 : 1;
  b.L_pad = 150;
  std::vector<int> lengths = {150, 67, 1, 129};
  if (pairs) lengths.insert(lengths.end(), {12, 150, 80, 3});
  Rng rng(11, static_cast<uint64_t>(step));
  b.offsets.push_back(0);
  for (int len : lengths) {
    for (int i = 0; i < len; ++i) b.tokens.push_back(static_cast<int32_t>(1 + rng.below(19)));
    b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  for (int i = 0; i < b.B; ++i) b.labels.push_back(static_cast<int32_t>(rng.below(pairs ? 2 : 10)));
  b.key_mask.assign(b.tokens.size(), 1);
  for (size_t t = 5; t < b.key_mask.size(); t += 13) b.key_mask[t] = 0;
  return b;
}

std::vector<float> download(Backend<float>& be, const float* p, int64_t n) {
  std::vector<float> h(static_cast<size_t>(n));
  be.download(h.data(), p, h.size() * sizeof(float));
  return h;
}

// One training step (loss, logits, every gradient) and ten AdamW steps on both backends.
void compare_training(const ModelConfig& cfg, bool pairs) {
  auto cpu = make_backend<float>(Device::Cpu);
  auto gpu = make_backend<float>(Device::Cuda);
  Model<float> mc(cfg, *cpu, 4, 2), mg(cfg, *gpu, 4, 2);
  mc.init_params(3);
  mg.init_params(3);
  AdamW hp;
  hp.weight_decay = 0.1;
  AdamWOptimizer<float> oc(*cpu, mc.num_params(), hp), og(*gpu, mg.num_params(), hp);
  std::vector<double> lc, lg;
  for (int step = 0; step < 10; ++step) {
    const Batch b = batch_for(step, pairs);
    mc.load_batch(b);
    mg.load_batch(b);
    lc.push_back(mc.forward(true, 99, step));
    lg.push_back(mg.forward(true, 99, step));
    mc.zero_grads();
    mg.zero_grads();
    mc.backward(99, step);
    mg.backward(99, step);
    if (step == 0) {
      INFO("loss cpu " << lc[0] << " gpu " << lg[0]);
      CHECK(std::abs(lc[0] - lg[0]) < 1e-5 * std::abs(lc[0]));
      CHECK(nmse(mg.logits(), mc.logits()) < 1e-10);
      const auto gc = download(*cpu, mc.grad_block(), mc.num_params());
      const auto gg = download(*gpu, mg.grad_block(), mg.num_params());
      for (const auto& p : mc.params()) {
        const size_t off = static_cast<size_t>(p.grad - mc.grad_block());
        const std::vector<float> a(gc.begin() + off, gc.begin() + off + p.size);
        const std::vector<float> g(gg.begin() + off, gg.begin() + off + p.size);
        INFO(p.name << " nmse " << nmse(g, a));
        CHECK(nmse(g, a) < 1e-8);
      }
    }
    const double nc = oc.step(mc.param_block(), mc.grad_block(), 1e-3, step + 1, 1.0);
    const double ng = og.step(mg.param_block(), mg.grad_block(), 1e-3, step + 1, 1.0);
    CHECK(std::abs(nc - ng) < 1e-4 * nc);
  }
  for (int step = 0; step < 10; ++step) {
    INFO("step " << step << " loss cpu " << lc[step] << " gpu " << lg[step]);
    CHECK(std::abs(lc[step] - lg[step]) < 1e-4 * std::abs(lc[step]));
  }
  const auto pc = download(*cpu, mc.param_block(), mc.num_params());
  const auto pg = download(*gpu, mg.param_block(), mg.num_params());
  CHECK(nmse(pg, pc) < 1e-9);
}

}  // namespace

TEST_CASE("the model trains the same on the GPU as on the CPU", "[cuda][model]") {
  for (const std::string& attn : cuda::attention_names()) {
    for (bool causal : {false, true}) {
      for (Pool pool : {Pool::Cls, Pool::Mean}) {
        if (causal && !has_hyperparam(find_attention(attn), "causal")) continue;
        // Causal with CLS pooling is refused by the model (the CLS row, first, would see only itself).
        if (causal && pool == Pool::Cls) continue;
        DYNAMIC_SECTION(attn << (causal ? " causal" : "") << (pool == Pool::Cls ? " CLS" : " MEAN")) {
          compare_training(small_config(attn, pool, causal), false);
        }
      }
    }
  }
}

TEST_CASE("max pooling and rotary position embeddings train the same on the GPU as on the CPU", "[cuda][model]") {
  for (const std::string& attn : {std::string("softmax"), std::string("cosformer"), std::string("performer")}) {
    for (bool rope : {false, true}) {
      for (Pool pool : {Pool::Max, Pool::Cls}) {
        if (!rope && pool == Pool::Cls) continue;  // the main table has it
        DYNAMIC_SECTION(attn << (rope ? " rope" : "") << (pool == Pool::Max ? " MAX" : " CLS")) {
          ModelConfig cfg = small_config(attn, pool, false);
          cfg.rope = rope;
          cfg.learn_pos_emb = false;
          compare_training(cfg, false);
        }
      }
    }
  }
}

TEST_CASE("the dual encoder trains the same on the GPU as on the CPU", "[cuda][model][dual]") {
  for (const std::string& attn : {std::string("softmax"), std::string("cosformer")}) {
    for (Interaction interaction : {Interaction::Nli, Interaction::Concat}) {
      DYNAMIC_SECTION(attn << (interaction == Interaction::Nli ? " nli" : " concat")) {
        ModelConfig cfg = small_config(attn, interaction == Interaction::Nli ? Pool::Cls : Pool::Mean, false);
        cfg.num_classes = 2;
        cfg.dual = true;
        cfg.interaction = interaction;
        compare_training(cfg, true);
      }
    }
  }
}

TEST_CASE("every registered variant has a GPU path", "[cuda][model]") {
  CHECK(cuda::attention_names() == attention_names());
}

TEST_CASE("the CUDA backend reports its device", "[cuda]") {
  auto gpu = make_backend<float>(Device::Cuda);
  const nlohmann::json info = gpu->device_info();
  CHECK(!info.at("gpu").get<std::string>().empty());
  CHECK(info.at("gpu_memory_bytes").get<size_t>() > 0);
  CHECK(gpu->allocator().where() == std::string("cuda"));
  gpu->timer_start();
  CHECK(gpu->timer_stop() >= 0.0);
}
