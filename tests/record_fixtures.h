// Run records for the report and reproduce tests: complete (every required key), as lra run writes them,
// with the fields a test varies in one struct.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "results/record.h"

namespace lra::test {

// What a fixture run varies; the setters chain: RunSpec("listops", "softmax").seed(1).accuracy(0.38).
struct RunSpec {
  RunSpec(std::string task_name, std::string attn_name) : task(std::move(task_name)), attn(std::move(attn_name)) {}
  RunSpec& on(std::string p) {
    preset = std::move(p);
    return *this;
  }
  RunSpec& seed(uint64_t s) {
    seed_ = s;
    return *this;
  }
  RunSpec& ended(std::string s) {
    status = std::move(s);
    return *this;
  }
  RunSpec& accuracy(double a) {
    accuracy_ = a;
    return *this;
  }
  RunSpec& data(std::string name, std::string src) {
    dataset = std::move(name);
    source = std::move(src);
    return *this;
  }
  RunSpec& speed(double sps, double mib) {
    steps_per_sec = sps;
    peak_mib = mib;
    return *this;
  }
  RunSpec& steps(int64_t n) {
    steps_ = n;
    return *this;
  }
  RunSpec& started(std::string t) {
    started_at = std::move(t);
    return *this;
  }
  RunSpec& config(nlohmann::json c) {
    config_ = std::move(c);
    return *this;
  }

  std::string task, attn, preset = "cpu";
  uint64_t seed_ = 0;
  std::string status = "ok";
  double accuracy_ = 0.5;  // fraction, as the trainer records it
  std::string dataset, source = "generated";
  double steps_per_sec = 4.0;
  double peak_mib = 100;
  int64_t steps_ = 100;
  std::string started_at = "2026-01-01T00:00:00Z";
  nlohmann::json config_;  // the recorded config; null = a small made-up one
};

// A complete run record (every required key), as lra run writes it.
inline nlohmann::json run_record(const RunSpec& s) {
  const bool ok = s.status == "ok";
  nlohmann::json r = {
      {"schema_version", kRecordSchemaVersion},
      {"task", s.task},
      {"attn", s.attn},
      {"device", "cpu"},
      {"preset", s.preset},
      {"seed", s.seed_},
      {"run_id", fmt::format("{}_{}_{}_seed{}_{}", s.task, s.attn, s.preset, s.seed_, s.started_at)},
      {"config",
       {{"task", s.task},
        {"attn", s.attn},
        {"preset", s.preset},
        {"seed", s.seed_},
        {"threads", 2},
        {"num_train_steps", s.steps_},
        {"emb_dim", 64},
        {"attn_params", nlohmann::json::object()}}},
      {"dataset",
       {{"name", s.dataset.empty() ? s.task : s.dataset},
        {"source", s.source},
        {"n_train", 100},
        {"n_val", 20},
        {"n_test", 20}}},
      {"metrics",
       {{"val_accuracy", ok ? s.accuracy_ : 0.2},
        {"test_accuracy", ok ? nlohmann::json(s.accuracy_) : nullptr},
        {"test_loss", ok ? nlohmann::json(1.5) : nullptr},
        {"best_val_accuracy", ok ? s.accuracy_ : 0.2},
        {"best_step", 50},
        {"steps_done", ok ? s.steps_ : 40}}},
      {"curve", nlohmann::json::array({{{"step", 20},
                                        {"loss", 2.2},
                                        {"lr", 1e-3},
                                        {"val_accuracy", 0.2},
                                        {"val_loss", 2.1},
                                        {"wall_seconds", 1.0}},
                                       {{"step", 40},
                                        {"loss", 1.9},
                                        {"lr", 1e-3},
                                        {"val_accuracy", 0.3},
                                        {"val_loss", 1.8},
                                        {"wall_seconds", 2.0}}})},
      {"speed",
       {{"steps_per_sec", s.steps_per_sec},
        {"examples_per_sec", 32 * s.steps_per_sec},
        {"tokens_per_sec", 32000 * s.steps_per_sec},
        {"ms_per_step_median", 1000 / s.steps_per_sec},
        {"ms_per_step_p90", 1100 / s.steps_per_sec}}},
      {"memory", {{"peak_arena_bytes", s.peak_mib * 1048576}, {"peak_rss_bytes", 2 * s.peak_mib * 1048576}}},
      {"env",
       {{"cpu", "Test CPU 9000"},
        {"threads", 2},
        {"compiler", "gcc"},
        {"build_type", "Release"},
        {"git_sha", "abc123"},
        {"lra_version", "0.1.0"}}},
      {"status", s.status},
      {"started_at", s.started_at},
      {"wall_seconds", 25.0}};
  if (!s.config_.is_null()) r["config"] = s.config_;
  if (s.status == "failed") r["error"] = "the training loss became nan at step 7";
  if (s.status == "interrupted") r["checkpoint"] = "/runs/image_cosformer.ckpt";
  return r;
}

inline void write_run(const std::string& dir, const RunSpec& s) {
  const auto r = run_record(s);
  write_record(dir + "/" + r["run_id"].get<std::string>() + ".json", r);
}

}  // namespace lra::test
