// The task registry: each LRA task is a Task that knows its defaults (LRA's config), its presets,
// and how to load its three splits from the official files or its built-in generator.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "model/batch.h"

namespace lra {

// One split in memory: example i's tokens are tokens[offsets[i] .. offsets[i+1]), unpadded and
// already truncated to max_length.
struct Split {
  std::vector<uint16_t> tokens;
  std::vector<uint64_t> offsets{0};
  std::vector<int32_t> labels;
  // Token 0 is padding (LRA's image models mask pixel value 0): make_batch hides those keys.
  bool zero_is_padding = false;

  size_t size() const { return labels.size(); }
  int length(size_t i) const { return static_cast<int>(offsets[i + 1] - offsets[i]); }
  void add(const std::vector<uint16_t>& toks, int32_t label) {
    tokens.insert(tokens.end(), toks.begin(), toks.end());
    offsets.push_back(tokens.size());
    labels.push_back(label);
  }
};

// Where the data came from, for the run record (`dataset`).
struct DatasetInfo {
  std::string name;     // e.g. "listops"
  std::string source;   // "generated" or "files"
  std::string path;     // the files (or the generator's cache) folder
  bool generated = false;
  uint64_t generator_seed = 0;
  nlohmann::json generator = nlohmann::json::object();  // the generator's parameters
  std::vector<std::pair<std::string, std::string>> files;  // (path, checksum)
  nlohmann::json to_json(size_t n_train, size_t n_val, size_t n_test) const;
};

struct TaskData {
  Split train, val, test;
  DatasetInfo info;
};

struct DataOptions {
  std::string data_dir;   // official files; empty = use the built-in generator
  std::string cache_dir;  // where generated data is written and reused; empty = default_cache_dir()
  uint64_t data_seed = 0; // the generator's seed (fixed by default: every run sees the same data)
  int max_length = 0;     // truncate to this many tokens
  int64_t n_train = 0, n_val = 0, n_test = 0;  // examples per split; 0 = the task's default / all
  bool quiet = false;     // no progress messages on stderr
  // The task's own options (Task::params()), defaults filled in by resolve_task_params.
  nlohmann::json task_params = nlohmann::json::object();
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual std::string summary() const = 0;
  virtual int vocab_size() const = 0;
  virtual int num_classes() const = 0;
  // LRA's official config for this task (flat config keys, LRA names).
  virtual nlohmann::json defaults() const = 0;
  // Named overrides on top of defaults(); must contain "paper" and "cpu".
  virtual std::map<std::string, nlohmann::json> presets() const = 0;
  // The task's own options (`--set key=value`, recorded in config.task_params), none by default.
  virtual std::vector<HyperParam> params() const { return {}; }
  virtual TaskData load(const DataOptions& opt) const = 0;
};

// Defaults of task.params() overridden by `given`; unknown keys and values of the wrong kind throw.
nlohmann::json resolve_task_params(const Task& task, const nlohmann::json& given);

const std::vector<std::unique_ptr<Task>>& task_registry();
// Throws, listing the registered names, when `name` is unknown.
const Task& find_task(const std::string& name);
std::vector<std::string> task_names();

// The default cache folder: $LRA_CACHE_DIR, else $XDG_CACHE_HOME/lra, else ~/.cache/lra.
std::string default_cache_dir();

// Builds a model batch from examples idx of a split (packed, no padding); L_pad = max_length.
Batch make_batch(const Split& split, const std::vector<size_t>& idx, int max_length);

}  // namespace lra
