// Config layers, --set parsing, schedules, the epoch sampler and checkpoints.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "core/check.h"
#include "core/files.h"
#include "tasks/task.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/schedule.h"
#include "train/trainer.h"
#include "test_util.h"

using namespace lra;
using lra::test::TempDir;

TEST_CASE("config: task defaults, presets, file and --set layer in that order", "[config]") {
  const RunConfig paper = resolve_config("listops", "softmax", "paper", "", {});
  CHECK(paper.model.emb_dim == 512);
  CHECK(paper.model.num_layers == 4);
  CHECK(paper.num_train_steps == 5000);
  CHECK(paper.learning_rate == 0.05);
  CHECK(paper.model.vocab_size == 17);
  CHECK(paper.model.num_classes == 10);
  CHECK(paper.model.max_length == 2000);

  const RunConfig cpu = resolve_config("listops", "softmax", "cpu", "", {});
  CHECK(cpu.model.emb_dim < paper.model.emb_dim);

  const TempDir dir("config");
  const std::string file = dir / "c.json";
  write_file_atomic(file, R"({"emb_dim": 32, "num_heads": 4, "learning_rate": 0.001, "attn_params": {"eps": 1e-4}})");
  const RunConfig c = resolve_config("listops", "cosformer", "cpu", file, {"num_heads=2", "eps=1e-5", "gelu=exact"});
  CHECK(c.model.emb_dim == 32);
  CHECK(c.model.num_heads == 2);
  CHECK(c.learning_rate == 0.001);
  CHECK(c.model.attn_params["eps"].get<double>() == 1e-5);
  CHECK(c.model.gelu == GeluKind::Exact);
  // attn_params in a file merge key by key and are checked against the variant.
  CHECK(resolve_config("listops", "cosformer", "cpu", file, {}).model.attn_params["eps"].get<double>() == 1e-4);
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", file, {}),
                    Catch::Contains("attention 'softmax' has no hyperparameter 'eps'"));
}

TEST_CASE("config: bad keys and values are clear errors", "[config]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"emb_dimm=3"}),
                    Contains("unknown config key 'emb_dimm'") && Contains("emb_dim"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"emb_dim=wide"}),
                    Contains("'emb_dim' expects a value like"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"num_layers=2.5"}),
                    Contains("'num_layers' expects a value like"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"eps=1e-5"}),
                    Contains("attention 'softmax' takes: causal, store_probs"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"vocab_size=20"}), Contains("set by the task"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "fast", "", {}), Contains("valid presets: cpu, paper"));
  CHECK_THROWS_WITH(resolve_config("listops", "flash", "cpu", "", {}), Contains("valid names: softmax, cosformer"));
  CHECK_THROWS_WITH(resolve_config("imagenet", "softmax", "cpu", "", {}), Contains("valid tasks: listops"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"num_heads=3"}), Contains("divisible"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"classifier_pool=MIN"}),
                    Contains("CLS, MEAN or MAX"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"pos_emb=alibi"}),
                    Contains("pos_emb must be absolute") && Contains("or rope"));
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"pos_emb=rope", "num_heads=8", "qkv_dim=24"}),
                    Contains("must be even"));
  // ListOps learns its absolute positions by default; with rotary embeddings there are none to learn.
  const RunConfig rope = resolve_config("listops", "softmax", "cpu", "", {"pos_emb=rope", "classifier_pool=MAX"});
  CHECK(rope.model.rope);
  CHECK_FALSE(rope.model.learn_pos_emb);
  CHECK(rope.model.pool == Pool::Max);
  CHECK(rope.to_json()["pos_emb"] == "rope");
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "/nonexistent/c.json", {}), Contains("/nonexistent/c.json"));
}

TEST_CASE("config: --set values parse as JSON, else as strings", "[config]") {
  CHECK(parse_set("learning_rate=1e-3").second.get<double>() == 1e-3);
  CHECK(parse_set("learn_pos_emb=true").second.get<bool>());
  CHECK(parse_set("classifier_pool=MEAN").second.get<std::string>() == "MEAN");
  CHECK(parse_set("factors=constant * linear_warmup").second.get<std::string>() == "constant * linear_warmup");
  CHECK_THROWS_AS(parse_set("noequals"), Error);
}

TEST_CASE("config: a record's config reads back to the same config", "[config]") {
  const RunConfig c = resolve_config("listops", "cosformer", "cpu", "", {"seed=7"});
  CHECK(RunConfig::from_json(c.to_json()).to_json() == c.to_json());
}

TEST_CASE("schedule: LRA's rsqrt and cosine factors", "[config]") {
  const LrSchedule rsqrt("constant * linear_warmup * rsqrt_decay", 0.05, 1000, 4000);
  CHECK(rsqrt(0) == 0.0);
  CHECK(rsqrt(500) == Approx(0.05 * 0.5 / std::sqrt(1000.0)));
  CHECK(rsqrt(1000) == Approx(1.58113883e-3));
  CHECK(rsqrt(4999) == Approx(0.05 / std::sqrt(4999.0)));
  const LrSchedule cosine("constant * linear_warmup * cosine_decay", 1e-3, 100, 900);
  CHECK(cosine(100) == Approx(1e-3));
  CHECK(cosine(550) == Approx(0.5e-3));
  CHECK(cosine(999) == Approx(1e-3 * 0.5 * (1 + std::cos(M_PI * 899.0 / 900))).margin(1e-12));
  CHECK_THROWS_WITH(LrSchedule("constant * warmup_cosine", 1, 1, 1), Catch::Contains("known factors"));
}

TEST_CASE("sampler: each epoch visits every example once, in a seeded order", "[config]") {
  EpochSampler a(10, 3), b(10, 3), c(10, 4);
  std::multiset<size_t> epoch0;
  for (int step = 0; step < 5; ++step)
    for (size_t i : a.batch(step, 2)) epoch0.insert(i);
  CHECK(epoch0 == std::multiset<size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(a.batch(7, 4) == b.batch(7, 4));  // a pure function of (seed, step)
  CHECK(b.batch(0, 10) != c.batch(0, 10));
}

TEST_CASE("checkpoint: round trip, and truncation or corruption is detected", "[config]") {
  const TempDir dir("ckpt");
  const std::string path = dir / "run.ckpt";
  const std::vector<float> p = {1, 2, 3}, m = {4, 5, 6}, v = {7, 8, 9};
  save_checkpoint(path, {{"step", 12}}, p.data(), m.data(), v.data(), 3);
  const Checkpoint c = load_checkpoint(path);
  CHECK(c.meta["step"] == 12);
  CHECK(c.params == p);
  CHECK(c.m == m);
  CHECK(c.v == v);
  std::string bytes = read_file(path);
  write_file_atomic(path, bytes.substr(0, bytes.size() - 10));
  CHECK_THROWS_WITH(load_checkpoint(path), Catch::Contains("truncated") || Catch::Contains("corrupt"));
  bytes[bytes.size() - 20] ^= 1;
  write_file_atomic(path, bytes);
  CHECK_THROWS_WITH(load_checkpoint(path), Catch::Contains("checksum"));
  CHECK_THROWS_WITH(load_checkpoint(dir / "missing.ckpt"), Catch::Contains("missing.ckpt"));
}

TEST_CASE("checkpoint: sizes beyond the file, a missing config or run id are errors naming the file", "[config]") {
  // Found by fuzz/fuzz_checkpoint.cpp: sizes read from the file were trusted up to 1 GiB of metadata and
  // 2^36 parameters (allocated before reading), and a checkpoint without a config threw a JSON error.
  const TempDir dir("ckpt-bad");
  const std::string path = dir / "bad.ckpt";
  auto header = [](uint64_t len, const std::string& text) {
    std::string b = "LRACKPT1";
    b.append(reinterpret_cast<const char*>(&len), sizeof len);
    return b + text;
  };
  write_file_atomic(path, header(989856741, "{}"));
  CHECK_THROWS_WITH(load_checkpoint_meta(path), Catch::Contains(path) && Catch::Contains("exceeds the file"));
  const std::string meta = R"({"run_id":"x"})";
  std::string bytes = header(meta.size(), meta);
  const uint64_t n = uint64_t{1} << 35;
  bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
  write_file_atomic(path, bytes + std::string(24, '\0'));
  CHECK_THROWS_WITH(load_checkpoint(path), Catch::Contains(path) && Catch::Contains("34359738368 parameters"));
  CHECK_THROWS_WITH(config_from_checkpoint(path), Catch::Contains(path) && Catch::Contains("holds no run config"));

  const std::vector<float> one = {1};
  save_checkpoint(path, {{"run_id", "../elsewhere"}, {"started_at", "now"}, {"config", {{"task", "listops"}}}},
                  one.data(), one.data(), one.data(), 1);
  TrainOptions opt;
  opt.resume = path;
  CHECK_THROWS_WITH(Trainer(config_from_checkpoint(path), opt), Catch::Contains("not a file name"));
  save_checkpoint(path, {{"config", {{"emb_dim", "wide"}}}}, one.data(), one.data(), one.data(), 1);
  CHECK_THROWS_WITH(config_from_checkpoint(path), Catch::Contains(path) && Catch::Contains("wrong form"));
}

namespace {
// A task with options, to check resolve_task_params without depending on a real task's choices.
class OptionTask final : public Task {
 public:
  std::string name() const override { return "option-task"; }
  std::string summary() const override { return "test"; }
  TaskShape shape(const nlohmann::json&) const override { return {2, 2, false, ""}; }
  DocumentView view(const uint16_t* ids, size_t n) const override { return byte_text_view(ids, n); }
  nlohmann::json defaults() const override { return nlohmann::json::object(); }
  std::map<std::string, nlohmann::json> presets() const override { return {}; }
  std::vector<HyperParam> params() const override {
    return {{"resolution", 32, "pixels"}, {"dataset", "auto", "which files"}, {"zero_is_padding", true, "mask 0"}};
  }
  TaskData load(const DataOptions&) const override { return {}; }
  DataStatus data_status(const DataOptions&) const override { return {}; }
};
}  // namespace

TEST_CASE("config: task options resolve with defaults and reject unknown keys and wrong kinds", "[config]") {
  using Catch::Matchers::Contains;
  const OptionTask t;
  const nlohmann::json r = resolve_task_params(t, {{"resolution", 128}});
  CHECK(r == nlohmann::json{{"resolution", 128}, {"dataset", "auto"}, {"zero_is_padding", true}});
  CHECK_THROWS_WITH(resolve_task_params(t, {{"resolutoin", 64}}),
                    Contains("no option 'resolutoin'") && Contains("resolution, dataset, zero_is_padding"));
  CHECK_THROWS_WITH(resolve_task_params(t, {{"zero_is_padding", 1}}), Contains("expects a value like true"));
  // ListOps has no options: a stray key names the task's (none) and the attention's.
  CHECK_THROWS_WITH(resolve_config("listops", "softmax", "cpu", "", {"resolution=64"}),
                    Contains("task 'listops' takes: none"));
  CHECK(resolve_config("listops", "softmax", "cpu", "", {}).to_json().at("task_params").empty());
}
