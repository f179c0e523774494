// The task registry: each LRA task is a Task that knows its defaults (LRA's config), its presets,
// and how to load its three splits from the official files or its built-in generator.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/hyperparams.h"
#include "data/batch.h"

namespace lra {

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

// What `lra data status` shows for one task: the data load() would use with the same options, why, and
// what it holds, found without generating anything (official files may be read, to count them).
struct DataStatus {
  std::string source;   // as DatasetInfo::source: "files", "generated" or "stand-in"
  std::string dataset;  // what the data is, e.g. "IMDB (aclImdb_v1.tar.gz)", "ListOps (generated)"
  std::string reason;   // why load() takes this source, e.g. "no --data-dir was given"
  std::string path;     // the files, or the generator's cache ("" when nothing is kept on disk)
  int64_t n_train = 0, n_val = 0, n_test = 0;  // examples per split: planned ones when generated
  std::vector<std::pair<std::string, std::string>> files;  // (path, checksum): files read, or the cache
  bool generated = false;
  uint64_t seed = 0;    // the generator's seed, when generated
  bool cached = false;  // generated: the generator's cache already exists at `path`
  nlohmann::json details = nlohmann::json::object();  // e.g. the generator's settings, the parse cache
};

// Throws when opt.data_dir is set but does not exist: a mistyped --data-dir (or a stale LRA_DATA_DIR)
// must not quietly turn into built-in data. A data_dir that exists but holds nothing for a task is
// not an error: the task falls back to its built-in data and says why.
inline void check_data_dir_exists(const DataOptions& opt) {
  std::error_code ec;
  LRA_CHECK(opt.data_dir.empty() || std::filesystem::exists(opt.data_dir, ec),
            "--data-dir '{}' does not exist; create it (`lra data fetch TASK --data-dir {}` downloads the "
            "official files into it) or leave --data-dir out (and unset LRA_DATA_DIR) for the built-in data",
            opt.data_dir, opt.data_dir);
}

// What a model must be to take a task's examples. The length and the pooling a task expects are config
// keys of its defaults() (`max_length`, `classifier_pool`), overridable like any other.
struct TaskShape {
  int vocab_size = 0;
  int num_classes = 0;
  bool pairs = false;       // an example is two documents, read by one encoder (a dual encoder)
  std::string interaction;  // pairs: how the head combines the two pooled vectors u, v ("nli", "concat")
};

// One document as `lra data show` presents it: its tokens decoded back to text, or, for an image task,
// the image they are.
struct DocumentView {
  std::string text;           // the decoded text (empty for an image)
  int width = 0, height = 0;  // an image: pixels holds height rows of width gray values (0..255)
  std::vector<uint8_t> pixels;
};

// Byte-level text (id = byte + 1, 0 = padding): the bytes, with what is not printable ASCII escaped.
DocumentView byte_text_view(const uint16_t* ids, size_t n);
// Pixel tokens (id = gray value): a square image when n is a square, else rows of `width`, the last
// one cut short (a document truncated by max_length).
DocumentView pixel_view(const uint16_t* ids, size_t n, int width);

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual std::string summary() const = 0;
  // LRA's official config for this task (flat config keys, LRA names).
  virtual nlohmann::json defaults() const = 0;
  // Named overrides on top of defaults(); must contain "paper" and "cpu".
  virtual std::map<std::string, nlohmann::json> presets() const = 0;
  // The task's own options (`--set key=value`, recorded in config.task_params), none by default.
  virtual std::vector<HyperParam> params() const { return {}; }
  // The shape of its examples under its resolved options (resolve_task_params); throws, naming the
  // option, when an option's value is not one the task knows.
  virtual TaskShape shape(const nlohmann::json& task_params) const = 0;
  // One document's n tokens as a person reads them (`lra data show`).
  virtual DocumentView view(const uint16_t* ids, size_t n) const = 0;
  virtual TaskData load(const DataOptions& opt) const = 0;
  // The source load(opt) would use and why, its location, examples per split and checksums, without
  // generating anything; a broken layout of official files throws as load() would.
  virtual DataStatus data_status(const DataOptions& opt) const = 0;
};

// Throws, naming the option, when n_train, n_val or n_test is negative (0 means the task's default).
void check_split_sizes(const DataOptions& opt);

// What LRA's configs for its text tasks (ListOps, Text, Retrieval) share: batch 32, Adam with decoupled
// weight decay 0.1, betas (0.9, 0.98), eps 1e-9, 0.05 * linear_warmup * rsqrt_decay, dropout 0.1 and
// 0.1, CLS pooling, sinusoidal positions, no clipping; `task_keys` (the sizes, the length, the schedule's
// warmup and steps, eval_frequency) are added to them.
nlohmann::json lra_text_task_config(const nlohmann::json& task_keys);

// Defaults of task.params() overridden by `given`; unknown keys and values of the wrong kind throw.
nlohmann::json resolve_task_params(const Task& task, const nlohmann::json& given);

const std::vector<std::unique_ptr<Task>>& task_registry();
// Throws, listing the registered names, when `name` is unknown.
const Task& find_task(const std::string& name);
std::vector<std::string> task_names();

// The default cache folder: $LRA_CACHE_DIR, else $XDG_CACHE_HOME/lra, else ~/.cache/lra.
std::string default_cache_dir();

}  // namespace lra
