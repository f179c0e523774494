// Reading records back: every run record and `lra bench attn` record under some files or folders, for
// `lra report`, `lra compare` and `lra reproduce`. A file that is not a readable record is named and
// skipped, never fatal, so one truncated file does not hide a folder of results.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lra {

struct RunEntry {
  std::string path;
  nlohmann::json record;
  std::string task, attn, preset, status;  // status: ok, failed, interrupted (or running, when a run died)
  uint64_t seed = 0;
  std::string started_at;

  bool ok() const { return status == "ok"; }
  // Test accuracy in percent (only for ok runs).
  double test_accuracy_pct() const;
};

struct BenchEntry {
  std::string path;
  nlohmann::json record;  // kind "bench_attn"
};

struct RecordSet {
  std::vector<RunEntry> runs;
  std::vector<BenchEntry> benches;
  std::vector<std::string> skipped;  // "PATH: why", for files that are not readable records
};

// `paths` are record files or folders, searched recursively for *.json. Run records (schema_version, task,
// attn, ...) and bench records (kind "bench_attn") are kept; published tables (kind "published_*") are
// passed over; anything else is listed in `skipped`. A path that does not exist throws.
RecordSet load_records(const std::vector<std::string>& paths);

// Whether a run's data is what the paper used (LRA's files or LRA's own generator): built-in stand-ins
// (dataset.source "stand-in") and Fashion-MNIST in place of CIFAR-10 are not. `why` says what the data is.
bool data_comparable(const nlohmann::json& record, std::string* why);

// Whether a recorded config `have` is the config `want`, comparing the keys both have (a key added to the
// config since the record was written does not make it stale) and, inside attn_params and task_params,
// likewise; `threads` is ignored (it changes speed, not results). `diffs` (may be null) gets "key: have
// vs want" for every difference.
bool config_matches(const nlohmann::json& have, const nlohmann::json& want, std::vector<std::string>* diffs);

// What config `config` changes from `base`: "key=value" (strings unquoted) for each key both have on
// which they differ, attn_params and task_params key by key ("attn_params.eps=1e-05"), in key order;
// seed and threads never count.
std::vector<std::string> config_changes(const nlohmann::json& config, const nlohmann::json& base);

// The config a run of (task, variant, preset) has when nothing is set: what the engine's presets give.
using PresetConfig =
    std::function<nlohmann::json(const std::string& task, const std::string& attn, const std::string& preset)>;

// Each run's config_changes from its preset's config. Where `preset_config` is unset or throws (a task or
// variant this build lacks), from the config of the latest run of the same task, variant and preset, so
// that runs of different configs are still told apart.
std::map<const RunEntry*, std::vector<std::string>> run_changes(const std::vector<const RunEntry*>& runs,
                                                                const PresetConfig& preset_config);

// The changes every one of `runs` makes (said once for a table), and a run's changes without them (what
// names its row or column): "" when it has none.
std::vector<std::string> common_changes(const std::vector<const RunEntry*>& runs,
                                        const std::map<const RunEntry*, std::vector<std::string>>& changes);
std::string changes_label(const std::vector<std::string>& changes, const std::vector<std::string>& common);

// "CPU, N threads[, GPU name]" from a record's env.
std::string describe_hardware(const nlohmann::json& env);

// The order LRA's tables use (softmax first, then LRA's rows), then the other registered variants.
std::vector<std::string> report_attention_order();

}  // namespace lra
