// The resolved configuration of one run: task defaults <- preset <- config file <- --set flags.
// Every field has one flat JSON name (LRA's where LRA has one), which is what config files, --set
// and the run record's `config` use.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"
#include "tasks/task.h"

namespace lra {

struct RunConfig {
  std::string task = "listops";
  std::string preset = "cpu";
  std::string device = "cpu";
  uint64_t seed = 0;       // model initialisation, data order, dropout
  uint64_t data_seed = 0;  // the data generator's seed (same data for every run by default)
  int threads = 0;         // 0 = all cores
  ModelConfig model;
  // Optimisation (LRA: flax Adam with decoupled weight decay).
  int batch_size = 32;
  int64_t num_train_steps = 1000;
  double learning_rate = 0.05;
  std::string factors = "constant * linear_warmup * rsqrt_decay";
  int64_t warmup = 1000;
  int64_t steps_per_cycle = 0;  // cosine_decay cycle; 0 = num_train_steps - warmup
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.98, adam_eps = 1e-9;
  double grad_clip_norm = 0.0;  // 0 = no clipping
  int64_t eval_frequency = 100;
  int64_t n_train = 0, n_val = 0, n_test = 0;  // examples per split; 0 = the task's default / all
  nlohmann::json task_params = nlohmann::json::object();  // the task's own options (Task::params())

  nlohmann::json to_json() const;
  static RunConfig from_json(const nlohmann::json& j);  // strict: unknown keys and wrong types throw
};

// The data options a run with config `c` loads its task's data with (`lra run` and `lra data status`
// must agree on them).
DataOptions data_options(const RunConfig& c, const std::string& data_dir, const std::string& cache_dir, bool quiet);

// The flat keys a config file or --set may name (attention hyperparameters come on top).
std::vector<std::string> config_keys();

// Merges `overrides` into `base` (both flat config objects): every key must exist in base or be an
// option of the run's task (then it lands in task_params) or a hyperparameter of its attention variant
// (then it lands in attn_params); types must agree.
// `origin` names where the overrides came from, for error messages.
void merge_config(nlohmann::json& base, const nlohmann::json& overrides, const std::string& origin);

// Parses one --set argument "key=value"; the value is read as JSON when it parses (numbers, true,
// false, "quoted"), else as a plain string.
std::pair<std::string, nlohmann::json> parse_set(const std::string& arg);

// Resolves the full config: the task's defaults, then the preset, then a config file (may be empty),
// then the --set overrides, in that order. task and attn name the registries' entries.
RunConfig resolve_config(const std::string& task, const std::string& attn, const std::string& preset,
                         const std::string& config_file, const std::vector<std::string>& sets);

// The config of (task, attn, preset) with nothing set, as a record holds it: what reports name a run's
// changes against (results/collection.h's PresetConfig).
nlohmann::json preset_config_json(const std::string& task, const std::string& attn, const std::string& preset);

}  // namespace lra
