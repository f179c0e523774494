// Parity with PyTorch: the committed fixtures (tests/fixtures/make_parity.py, torch float64) hold a tiny
// model's parameters, a padded batch, its logits, loss, every parameter gradient and the parameters after
// one AdamW step. The double model must agree to ~1e-10, the float model to float precision.
#include <catch2/catch.hpp>
#include <cmath>
#include <type_traits>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/sys.h"
#include "model/model.h"
#include "train/config.h"

using namespace lra;

namespace {

nlohmann::json load_fixture(const std::string& name) {
  return nlohmann::json::parse(read_file(std::string(LRA_FIXTURES) + "/" + name + ".json"));
}

// The padded fixture batch, packed the way lra feeds the model.
Batch fixture_batch(const nlohmann::json& f) {
  Batch b;
  b.B = static_cast<int>(f["lengths"].size());
  b.L_pad = f["config"]["max_length"].get<int>();
  b.offsets.push_back(0);
  for (int e = 0; e < b.B; ++e) {
    const int n = f["lengths"][static_cast<size_t>(e)].get<int>();
    for (int i = 0; i < n; ++i) {
      b.tokens.push_back(f["tokens"][static_cast<size_t>(e)][static_cast<size_t>(i)].get<int32_t>());
      b.key_mask.push_back(static_cast<uint8_t>(f["key_mask"][static_cast<size_t>(e)][static_cast<size_t>(i)].get<int>()));
    }
    b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  b.labels = f["labels"].get<std::vector<int32_t>>();
  return b;
}

double rel_err(const std::vector<double>& got, const std::vector<double>& want) {
  double diff = 0, scale = 1e-12;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
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
    if (!std::is_same<T, double>::value) {
      // Adam's first step is lr * g/(|g| + eps): for a gradient near zero its sign is decided by
      // rounding, so in float only the well-conditioned entries are compared (double checks all).
      const auto g = f["grads"][p.name].template get<std::vector<double>>();
      double gmax = 0;
      for (double v : g) gmax = std::max(gmax, std::fabs(v));
      for (size_t k = 0; k < g.size(); ++k)
        if (std::fabs(g[k]) < 1e-3 * gmax) got[k] = want[k];
    }
    CHECK(rel_err(got, want) < tol);
  }
}

}  // namespace

TEST_CASE("softmax model matches PyTorch (float64)", "[parity]") { check_parity<double>("parity_softmax", 1e-10); }
TEST_CASE("cosformer model matches PyTorch (float64)", "[parity]") { check_parity<double>("parity_cosformer", 1e-10); }
TEST_CASE("softmax model matches PyTorch (float32)", "[parity]") { check_parity<float>("parity_softmax", 2e-4); }
TEST_CASE("cosformer model matches PyTorch (float32)", "[parity]") { check_parity<float>("parity_cosformer", 2e-4); }
