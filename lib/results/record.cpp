#include "results/record.h"

#include <algorithm>
#include <cmath>

#include "core/files.h"
#include "core/system.h"
#include "lra_git_sha.h"

namespace lra {

nlohmann::json env_json(int threads) {
  return {{"cpu", cpu_model_name()},     {"threads", threads},       {"compiler", compiler_id()},
          {"build_type", LRA_BUILD_TYPE}, {"git_sha", LRA_GIT_SHA}, {"lra_version", LRA_VERSION}};
}

const std::vector<std::string>& required_record_keys() {
  static const std::vector<std::string> keys = {
      "schema_version", "task", "attn", "device", "preset", "seed", "config",
      "dataset.name", "dataset.source", "dataset.n_train", "dataset.n_val", "dataset.n_test",
      "metrics.val_accuracy", "metrics.test_accuracy", "metrics.test_loss", "metrics.best_val_accuracy",
      "metrics.best_step", "curve",
      "speed.steps_per_sec", "speed.examples_per_sec", "speed.tokens_per_sec", "speed.ms_per_step_median",
      "speed.ms_per_step_p90", "memory.peak_arena_bytes", "memory.peak_rss_bytes",
      "env.cpu", "env.threads", "env.compiler", "env.build_type", "env.git_sha", "env.lra_version",
      "status", "started_at", "wall_seconds"};
  return keys;
}

std::vector<std::string> missing_record_keys(const nlohmann::json& record) {
  std::vector<std::string> missing;
  for (const auto& key : required_record_keys()) {
    std::string pointer = "/" + key;
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    if (!record.contains(nlohmann::json::json_pointer(pointer))) missing.push_back(key);
  }
  return missing;
}

void write_record(const std::string& path, const nlohmann::json& record) {
  write_file_atomic(path, record.dump(2) + "\n");
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(pos));
  const size_t j = std::min(i + 1, v.size() - 1);
  return v[i] + (pos - static_cast<double>(i)) * (v[j] - v[i]);
}

}  // namespace lra
