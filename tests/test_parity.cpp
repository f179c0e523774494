// Parity with PyTorch: the committed fixtures (tests/fixtures/make_parity.py, torch float64) hold a tiny
// model's parameters, a padded batch, its logits, loss, every parameter gradient and the parameters after
// one AdamW step. The double model must agree to ~1e-10, the float model to float precision. Performer
// fixtures also hold each layer's random projection, which the test gives the model instead of drawing.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <set>
#include <type_traits>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/files.h"
#include "model/model.h"
#include "test_util.h"
#include "train/config.h"

using namespace lra;

namespace {

nlohmann::json load_fixture(const std::string& name) {
  return nlohmann::json::parse(read_file(std::string(LRA_FIXTURES) + "/" + name + ".json"));
}

// The padded fixture batch, packed the way lra feeds the model. Dual-encoder fixtures hold the second
// documents in tokens2 / lengths2 / key_mask2; they follow the first ones, as in Batch.
Batch fixture_batch(const nlohmann::json& f) {
  Batch b;
  b.B = static_cast<int>(f["lengths"].size());
  b.docs = f.contains("tokens2") ? 2 : 1;
  b.L_pad = f["config"]["max_length"].get<int>();
  b.offsets.push_back(0);
  for (const char* suffix : {"", "2"}) {
    if (!f.contains(std::string("tokens") + suffix)) continue;
    const auto& tokens = f[std::string("tokens") + suffix];
    const auto& mask = f[std::string("key_mask") + suffix];
    for (int e = 0; e < b.B; ++e) {
      const int n = f[std::string("lengths") + suffix][static_cast<size_t>(e)].get<int>();
      for (int i = 0; i < n; ++i) {
        b.tokens.push_back(tokens[static_cast<size_t>(e)][static_cast<size_t>(i)].get<int32_t>());
        b.key_mask.push_back(static_cast<uint8_t>(mask[static_cast<size_t>(e)][static_cast<size_t>(i)].get<int>()));
      }
      b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
    }
  }
  b.labels = f["labels"].get<std::vector<int32_t>>();
  return b;
}

// max |got - want| / max |want|; infinity where either side holds a NaN.
double rel_err(const std::vector<double>& got, const std::vector<double>& want) {
  const double diff = test::max_abs_diff(got, want);
  double scale = 1e-12;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  return diff / scale;
}

template <class T>
void check_parity(const std::string& name, double tol) {
  const nlohmann::json f = load_fixture(name);
  RunConfig rc = RunConfig::from_json(f["config"]);
  auto be = make_backend<T>(Device::Cpu);
  Model<T> m(rc.model, *be, 3, 2);
  const auto order = f["param_order"].get<std::vector<std::string>>();
  REQUIRE(order.size() == m.params().size());
  for (size_t i = 0; i < order.size(); ++i) {
    auto& p = m.params()[i];
    REQUIRE(p.name == order[i]);
    const auto v = f["params"][p.name].template get<std::vector<double>>();
    REQUIRE(static_cast<int64_t>(v.size()) == p.size);
    for (int64_t k = 0; k < p.size; ++k) p.value[k] = static_cast<T>(v[static_cast<size_t>(k)]);
  }
  if (f.contains("attn_features"))
    for (int l = 0; l < rc.model.num_layers; ++l)
      m.attention(l).set_random_features(f["attn_features"][static_cast<size_t>(l)].get<std::vector<double>>());
  m.load_batch(fixture_batch(f));
  const double loss = m.forward(true, 0, 0);
  CHECK(std::fabs(loss - f["loss"].get<double>()) < tol * std::max(1.0, std::fabs(loss)));
  const auto logits = m.logits();
  CHECK(rel_err(std::vector<double>(logits.begin(), logits.end()), f["logits"].template get<std::vector<double>>()) < tol);
  m.zero_grads();
  m.backward(0, 0);
  for (auto& p : m.params()) {
    INFO(name << ": gradient of " << p.name);
    CHECK(rel_err(std::vector<double>(p.grad, p.grad + p.size), f["grads"][p.name].template get<std::vector<double>>()) < tol);
  }
  const auto& hp = f["adamw"];
  AdamW adam;
  adam.lr = hp["lr"];
  adam.beta1 = hp["beta1"];
  adam.beta2 = hp["beta2"];
  adam.eps = hp["eps"];
  adam.weight_decay = hp["weight_decay"];
  be->adamw_update(m.param_block(), m.grad_block(), std::vector<T>(m.num_params(), T(0)).data(),
                   std::vector<T>(m.num_params(), T(0)).data(), m.num_params(), adam, 1);
  for (auto& p : m.params()) {
    INFO(name << ": parameter after AdamW " << p.name);
    auto want = f["params_after"][p.name].template get<std::vector<double>>();
    std::vector<double> got(p.value, p.value + p.size);
    // Adam's first step is lr * g/(|g| + eps): for a gradient that is zero up to rounding (the key
    // bias under softmax, which shifts a whole row of scores) its sign is decided by rounding, so only
    // the entries above the rounding level of the type are compared.
    const auto g = f["grads"][p.name].template get<std::vector<double>>();
    double gmax = 0;
    for (double v : g) gmax = std::max(gmax, std::fabs(v));
    const double floor = (std::is_same<T, double>::value ? 1e-8 : 1e-3) * gmax;
    for (size_t k = 0; k < g.size(); ++k)
      if (std::fabs(g[k]) < floor) got[k] = want[k];
    CHECK(rel_err(got, want) < tol);
  }
}

// Every parity_*.json in the fixtures folder, sorted (tests/fixtures/make_parity.py writes them).
std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(LRA_FIXTURES)) {
    const std::string f = e.path().filename().string();
    if (f.rfind("parity_", 0) == 0 && e.path().extension() == ".json") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("every registered variant has a parity fixture", "[parity]") {
  std::set<std::string> covered;
  for (const auto& name : fixture_names()) covered.insert(load_fixture(name)["config"]["attn"].get<std::string>());
  for (const auto& attn : attention_names()) {
    INFO(attn);
    CHECK(covered.count(attn) == 1);
  }
}

TEST_CASE("every variant's model matches PyTorch (float64)", "[parity]") {
  for (const auto& name : fixture_names()) {
    INFO(name);
    check_parity<double>(name, 1e-10);
  }
}

TEST_CASE("every variant's model matches PyTorch (float32)", "[parity]") {
  for (const auto& name : fixture_names()) {
    INFO(name);
    check_parity<float>(name, 2e-4);
  }
}
