// The whole model: finite-difference gradients of every parameter (double, dropout on, padding
// masks, examples of different lengths), determinism, and padding invariance.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>

#include "backend/backend.h"
#include "model/model.h"
#include "train/non_finite.h"
#include "train/optimizer.h"
#include "test_util.h"

using namespace lra;
using namespace lra::test;

namespace {

ModelConfig tiny_config(const std::string& attn, Pool pool, bool learned_pos) {
  ModelConfig c;
  c.vocab_size = 11;
  c.num_classes = 3;
  c.max_length = 12;
  c.emb_dim = 8;
  c.num_heads = 2;
  c.num_layers = 2;
  c.qkv_dim = 8;
  c.mlp_dim = 12;
  c.dropout_rate = 0.1f;
  c.attention_dropout_rate = 0.1f;
  c.pool = pool;
  c.learn_pos_emb = learned_pos;
  c.qkv_bias = true;
  c.attn = attn;
  return c;
}

Batch tiny_batch(bool with_mask) {
  Batch b;
  b.B = 3;
  b.L_pad = 12;
  const std::vector<int> lengths = {12, 5, 1};
  Rng rng(5, 6);
  b.offsets.push_back(0);
  for (int len : lengths) {
    for (int i = 0; i < len; ++i) b.tokens.push_back(static_cast<int32_t>(1 + rng.below(10)));
    b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  b.labels = {2, 0, 1};
  if (with_mask) {
    b.key_mask.assign(b.tokens.size(), 1);
    b.key_mask[3] = b.key_mask[7] = b.key_mask[13] = 0;
  }
  return b;
}

// Three pairs: the first documents have 12, 5 and 1 tokens, the second ones 4, 12 and 7.
Batch tiny_pair_batch() {
  Batch b;
  b.B = 3;
  b.docs = 2;
  b.L_pad = 12;
  const std::vector<int> lengths = {12, 5, 1, 4, 12, 7};
  Rng rng(7, 8);
  b.offsets.push_back(0);
  for (int len : lengths) {
    for (int i = 0; i < len; ++i) b.tokens.push_back(static_cast<int32_t>(1 + rng.below(10)));
    b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  b.labels = {1, 0, 1};
  b.key_mask.assign(b.tokens.size(), 1);
  b.key_mask[2] = b.key_mask[20] = b.key_mask[30] = 0;
  return b;
}

// Finite differences of the loss for every parameter, at weights larger than the initialisation so that
// every path carries a visible gradient.
void check_model_gradients(const ModelConfig& cfg, const Batch& batch) {
  auto be = make_backend<double>(Device::Cpu);
  Model<double> m(cfg, *be, 3, 2);
  m.init_params(3);
  for (auto& p : m.params())
    for (int64_t i = 0; i < p.size; ++i) p.value[i] += 0.3 * randn(1, 1000 + static_cast<uint64_t>(i) * 7 + p.size)[0];
  m.load_batch(batch);
  auto loss = [&] { return m.forward(true, 99, 4); };
  loss();
  m.zero_grads();
  m.backward(99, 4);
  std::vector<double> grads(m.grad_block(), m.grad_block() + m.num_params());
  for (auto& p : m.params()) {
    INFO(p.name);
    const double* g = grads.data() + (p.value - m.param_block());
    CHECK(fd_rel_error(p.value, g, static_cast<size_t>(p.size), loss, 25, 7) < 1e-6);
  }
}

ModelConfig tiny_dual_config(const std::string& attn, Pool pool, Interaction interaction) {
  ModelConfig c = tiny_config(attn, pool, pool == Pool::Cls);
  c.num_classes = 2;
  c.dual = true;
  c.interaction = interaction;
  return c;
}

}  // namespace

TEST_CASE("model gradients match finite differences for every parameter", "[model][grad]") {
  auto be = make_backend<double>(Device::Cpu);
  for (const char* attn : {"softmax", "cosformer"}) {
    for (Pool pool : {Pool::Cls, Pool::Mean, Pool::Max}) {
      const bool learned = pool == Pool::Cls;
      DYNAMIC_SECTION(attn << (pool == Pool::Cls ? " CLS" : pool == Pool::Mean ? " MEAN" : " MAX")
                           << (learned ? " learned" : " sinusoidal")) {
        check_model_gradients(tiny_config(attn, pool, learned), tiny_batch(true));
      }
    }
  }
}

TEST_CASE("model gradients with rotary position embeddings match finite differences", "[model][grad][rope]") {
  for (const char* attn : {"softmax", "cosformer", "performer"}) {
    for (Pool pool : {Pool::Cls, Pool::Mean}) {
      DYNAMIC_SECTION(attn << (pool == Pool::Cls ? " CLS" : " MEAN")) {
        ModelConfig c = tiny_config(attn, pool, false);
        c.rope = true;
        check_model_gradients(c, tiny_batch(true));
      }
    }
  }
}

TEST_CASE("the dual encoder's gradients match finite differences for every parameter", "[model][grad][dual]") {
  for (const char* attn : {"softmax", "cosformer"})
    for (Interaction interaction : {Interaction::Nli, Interaction::Concat}) {
      const Pool pool = interaction == Interaction::Nli ? Pool::Cls : Pool::Mean;
      DYNAMIC_SECTION(attn << (interaction == Interaction::Nli ? " nli CLS" : " concat MEAN")) {
        check_model_gradients(tiny_dual_config(attn, pool, interaction), tiny_pair_batch());
      }
    }
}

TEST_CASE("the dual encoder has LRA's dual head and shares the encoder between the documents", "[model][dual]") {
  auto be = make_backend<double>(Device::Cpu);
  const ModelConfig cfg = tiny_dual_config("softmax", Pool::Cls, Interaction::Nli);
  CHECK(cfg.head_widths() == std::vector<int>{32, 12, 6, 2});
  ModelConfig concat = cfg;
  concat.interaction = Interaction::Concat;
  CHECK(concat.head_widths() == std::vector<int>{16, 12, 6, 2});
  Model<double> m(cfg, *be, 3, 2);
  m.init_params(21);
  // Swapping the two documents of every pair and the two halves of the head's input is the identity:
  // the documents go through the same weights, and only the head tells first from second.
  const Batch b = tiny_pair_batch();
  m.load_batch(b);
  m.forward(false, 0, 0);
  const auto logits = m.logits();
  Batch swapped = b;
  swapped.tokens.clear();
  swapped.key_mask.clear();
  swapped.offsets = {0};
  for (int s = 0; s < 6; ++s) {
    const int from = s < 3 ? s + 3 : s - 3;
    for (int32_t t = b.offsets[from]; t < b.offsets[from + 1]; ++t) {
      swapped.tokens.push_back(b.tokens[static_cast<size_t>(t)]);
      swapped.key_mask.push_back(b.key_mask[static_cast<size_t>(t)]);
    }
    swapped.offsets.push_back(static_cast<int32_t>(swapped.tokens.size()));
  }
  // [u, v, u*v, u-v] -> [v, u, v*u, v-u]: swap the first two column blocks of fc1 and negate the fourth.
  auto& w = m.param("head.fc1.weight");
  const int D = cfg.emb_dim, in = 4 * D;
  for (int r = 0; r < cfg.mlp_dim; ++r) {
    double* row = w.value + static_cast<size_t>(r) * in;
    for (int c = 0; c < D; ++c) {
      std::swap(row[c], row[D + c]);
      row[3 * D + c] = -row[3 * D + c];
    }
  }
  m.load_batch(swapped);
  m.forward(false, 0, 0);
  const auto logits_swapped = m.logits();
  for (size_t i = 0; i < logits.size(); ++i) CHECK(logits_swapped[i] == Approx(logits[i]).epsilon(1e-12));
  SECTION("a batch of single documents is refused") { CHECK_THROWS_WITH(m.load_batch(tiny_batch(false)), Catch::Contains("document")); }
}

TEST_CASE("the same seed gives the same numbers", "[model]") {
  auto be = make_backend<float>(Device::Cpu);
  auto run = [&] {
    Model<float> m(tiny_config("softmax", Pool::Cls, false), *be, 3, 2);
    m.init_params(11);
    m.load_batch(tiny_batch(false));
    const double loss = m.forward(true, 5, 1);
    m.zero_grads();
    m.backward(5, 1);
    return std::make_pair(loss, std::vector<float>(m.grad_block(), m.grad_block() + m.num_params()));
  };
  const auto a = run(), b = run();
  CHECK(a.first == b.first);
  CHECK(a.second == b.second);
}

TEST_CASE("an example's logits do not depend on the rest of its batch", "[model][padding]") {
  auto be = make_backend<double>(Device::Cpu);
  for (const auto& attn : attention_names()) {
    INFO(attn);
    Model<double> m(tiny_config(attn, Pool::Mean, false), *be, 3, 2);
    m.init_params(12);
    const Batch full = tiny_batch(true);
    m.load_batch(full);
    m.forward(false, 0, 0);
    const auto all = m.logits();
    Batch one;
    one.B = 1;
    one.L_pad = full.L_pad;
    one.offsets = {0, 5};
    one.tokens.assign(full.tokens.begin() + 12, full.tokens.begin() + 17);
    one.key_mask.assign(full.key_mask.begin() + 12, full.key_mask.begin() + 17);
    one.labels = {0};
    m.load_batch(one);
    m.forward(false, 0, 0);
    const auto alone = m.logits();
    for (int c = 0; c < 3; ++c) CHECK(alone[static_cast<size_t>(c)] == Approx(all[static_cast<size_t>(3 + c)]).epsilon(1e-12));
  }
}

TEST_CASE("float and double models agree", "[model]") {
  auto bd = make_backend<double>(Device::Cpu);
  auto bf = make_backend<float>(Device::Cpu);
  Model<double> md(tiny_config("cosformer", Pool::Cls, true), *bd, 3, 2);
  Model<float> mf(tiny_config("cosformer", Pool::Cls, true), *bf, 3, 2);
  md.init_params(13);
  mf.init_params(13);
  md.load_batch(tiny_batch(true));
  mf.load_batch(tiny_batch(true));
  CHECK(mf.forward(true, 1, 2) == Approx(md.forward(true, 1, 2)).epsilon(1e-5));
}

TEST_CASE("the memory plan is exact and allocation-free", "[model]") {
  auto be = make_backend<float>(Device::Cpu);
  Model<float> m(tiny_config("softmax", Pool::Cls, false), *be, 3, 2);
  const MemoryReport r = m.memory();
  CHECK(r.params == static_cast<size_t>(m.num_params()) * sizeof(float));
  CHECK(r.grads == r.params);
  CHECK(r.activations > 0);
  CHECK(r.scratch > 0);
}

TEST_CASE("a pair's logits do not depend on the rest of its batch", "[model][padding][dual]") {
  auto be = make_backend<double>(Device::Cpu);
  const Batch full = tiny_pair_batch();
  Batch one;
  one.B = 1;
  one.docs = 2;
  one.L_pad = full.L_pad;
  one.offsets = {0};
  for (int s : {1, 4}) {  // pair 1: its first and its second document
    for (int32_t t = full.offsets[s]; t < full.offsets[s + 1]; ++t) {
      one.tokens.push_back(full.tokens[static_cast<size_t>(t)]);
      one.key_mask.push_back(full.key_mask[static_cast<size_t>(t)]);
    }
    one.offsets.push_back(static_cast<int32_t>(one.tokens.size()));
  }
  one.labels = {full.labels[1]};
  for (const auto& attn : attention_names()) {
    INFO(attn);
    Model<double> m(tiny_dual_config(attn, Pool::Mean, Interaction::Nli), *be, 3, 2);
    m.init_params(12);
    m.load_batch(full);
    m.forward(false, 0, 0);
    const auto all = m.logits();
    m.load_batch(one);
    m.forward(false, 0, 0);
    const auto alone = m.logits();
    for (int c = 0; c < 2; ++c)
      CHECK(alone[static_cast<size_t>(c)] == Approx(all[static_cast<size_t>(2 + c)]).epsilon(1e-12));
  }
}

TEST_CASE("a non-finite gradient is traced to the tensor nearest the output that holds one", "[model][nonfinite]") {
  auto be = make_backend<float>(Device::Cpu);
  Model<float> m(tiny_config("softmax", Pool::Cls, false), *be, 3, 2);
  m.init_params(3);
  m.load_batch(tiny_batch(false));
  m.forward(true, 1, 0);
  m.zero_grads();
  m.backward(1, 0);
  std::vector<float> grads(static_cast<size_t>(m.num_params()));
  be->download(grads.data(), m.grad_block(), grads.size() * sizeof(float));
  CHECK_FALSE(find_non_finite_grad(m.params(), grads).has_value());

  // A NaN in layer 0's qkv weight and an infinity in layer 1's MLP: the backward pass writes layer 1 first.
  auto offset_of = [&](const std::string& name) {
    int64_t at = 0;
    for (const auto& p : m.params()) {
      if (p.name == name) return at;
      at += p.size;
    }
    FAIL("no parameter " << name);
    return at;
  };
  grads[static_cast<size_t>(offset_of("layers.0.attn.qkv.weight") + 5)] = std::nanf("");
  grads[static_cast<size_t>(offset_of("layers.1.mlp.fc1.weight") + 7)] = -INFINITY;
  grads[static_cast<size_t>(offset_of("layers.1.mlp.fc1.weight") + 9)] = INFINITY;
  const auto bad = find_non_finite_grad(m.params(), grads);
  REQUIRE(bad.has_value());
  CHECK(bad->parameter == "layers.1.mlp.fc1.weight");
  CHECK(bad->layer == "layers.1");
  CHECK(bad->index == 7);
  CHECK(bad->value == -INFINITY);
  CHECK(bad->tensors == 2);
  CHECK(number_text(bad->value) == "-inf");
  CHECK(number_text(std::nan("")) == "nan");

  grads.assign(grads.size(), 0.0f);
  grads[static_cast<size_t>(offset_of("head.fc2.bias"))] = std::nanf("");
  const auto head = find_non_finite_grad(m.params(), grads);
  REQUIRE(head.has_value());
  CHECK(head->layer == "head");
  CHECK(head->tensors == 1);
}

TEST_CASE("adamw: a non-finite gradient norm leaves the parameters and moments as they were", "[model][nonfinite]") {
  auto be = make_backend<float>(Device::Cpu);
  Model<float> m(tiny_config("linear", Pool::Cls, false), *be, 3, 2);
  m.init_params(4);
  AdamWOptimizer<float> opt(*be, m.num_params(), AdamW{});
  const size_t n = static_cast<size_t>(m.num_params());
  std::vector<float> before(n), after(n), moment(n), g(n, 0.25f);
  be->download(before.data(), m.param_block(), n * sizeof(float));
  g[n / 2] = std::nanf("");
  be->upload(m.grad_block(), g.data(), n * sizeof(float));
  CHECK(std::isnan(opt.step(m.param_block(), m.grad_block(), 1e-3, 1, 1.0)));
  be->download(after.data(), m.param_block(), n * sizeof(float));
  CHECK(after == before);
  be->download(moment.data(), opt.m(), n * sizeof(float));
  CHECK(std::all_of(moment.begin(), moment.end(), [](float x) { return x == 0.0f; }));
  g[n / 2] = 0.25f;  // a finite gradient then updates as usual
  be->upload(m.grad_block(), g.data(), n * sizeof(float));
  CHECK(std::isfinite(opt.step(m.param_block(), m.grad_block(), 1e-3, 1, 1.0)));
  be->download(after.data(), m.param_block(), n * sizeof(float));
  CHECK(after != before);
}

TEST_CASE("a profiled step computes the same numbers and charges every phase", "[model][profile]") {
  auto be = make_backend<float>(Device::Cpu);
  Model<float> m(tiny_config("softmax", Pool::Cls, false), *be, 3, 2);
  m.init_params(5);
  m.load_batch(tiny_batch(true));
  auto step = [&] {
    const double loss = m.forward(true, 1, 2);
    m.zero_grads();
    m.backward(1, 2);
    std::vector<float> g(static_cast<size_t>(m.num_params()));
    be->download(g.data(), m.grad_block(), g.size() * sizeof(float));
    return std::make_pair(loss, g);
  };
  const auto plain = step();
  StepProfile prof;
  m.set_profile(&prof);
  const auto profiled = step();
  m.set_profile(nullptr);
  CHECK(profiled == plain);
  for (int p = 0; p < static_cast<int>(Phase::Count); ++p) {
    INFO(phase_name(static_cast<Phase>(p)));
    CHECK(prof.ms[static_cast<size_t>(p)] > 0.0);
  }
}

// Data parallelism's contract (train/trainer.h): the shares of a batch, each weighted by its size and
// keyed by its place in the whole (slice_batch), give the whole batch's loss and gradients, dropout and
// attention dropout included, for single documents and for the dual encoder's pairs.
TEST_CASE("a batch's weighted shares give the whole batch's loss and gradients", "[model][dist]") {
  auto be = make_backend<double>(Device::Cpu);
  struct Case {
    ModelConfig cfg;
    Batch whole;
  };
  const std::vector<Case> cases = {{tiny_config("softmax", Pool::Cls, true), tiny_batch(true)},
                                   {tiny_config("cosformer", Pool::Mean, false), tiny_batch(true)},
                                   {tiny_config("bigbird", Pool::Cls, false), tiny_batch(false)},
                                   {tiny_dual_config("softmax", Pool::Cls, Interaction::Nli), tiny_pair_batch()}};
  for (const Case& c : cases) {
    INFO(c.cfg.attn << (c.cfg.dual ? " (dual)" : ""));
    Model<double> m(c.cfg, *be, 3, 2);
    m.init_params(21);
    m.load_batch(c.whole);
    const double whole_loss = m.forward(true, 77, 5);
    m.zero_grads();
    m.backward(77, 5);
    const std::vector<double> whole_grads(m.grad_block(), m.grad_block() + m.num_params());
    for (const std::vector<int>& cuts : {std::vector<int>{0, 1, 3}, std::vector<int>{0, 2, 3}}) {
      INFO("shares cut at " << cuts[1]);
      double loss = 0.0;
      std::vector<double> grads(whole_grads.size(), 0.0);
      for (size_t k = 0; k + 1 < cuts.size(); ++k) {
        const Batch share = slice_batch(c.whole, cuts[k], cuts[k + 1]);
        REQUIRE(share.B == cuts[k + 1] - cuts[k]);
        CHECK(share.labels == std::vector<int32_t>(c.whole.labels.begin() + cuts[k], c.whole.labels.begin() + cuts[k + 1]));
        const double w = static_cast<double>(share.B) / c.whole.B;
        m.load_batch(share);
        loss += w * m.forward(true, 77, 5);
        m.zero_grads();
        m.backward(77, 5, w);
        for (size_t i = 0; i < grads.size(); ++i) grads[i] += m.grad_block()[i];
      }
      CHECK(loss == Approx(whole_loss).epsilon(1e-12));
      CHECK(max_abs_diff(grads, whole_grads) <= 1e-10 * max_abs(whole_grads));
    }
    // The place matters: the last example alone, keyed as if it were a whole batch, draws other masks.
    Batch misplaced = slice_batch(c.whole, 2, 3);
    const Batch placed = misplaced;
    misplaced.docs_shift[0] = misplaced.docs_shift[1] = misplaced.tokens_shift[0] = misplaced.tokens_shift[1] = 0;
    m.load_batch(placed);
    const double at_place = m.forward(true, 77, 5);
    m.load_batch(misplaced);
    CHECK(m.forward(true, 77, 5) != at_place);
  }
}
