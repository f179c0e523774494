#include "tasks/task.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <utility>

#include "core/check.h"

namespace lra {

std::unique_ptr<Task> make_listops_task();
std::unique_ptr<Task> make_text_task();
std::unique_ptr<Task> make_retrieval_task();
std::unique_ptr<Task> make_image_task();
std::unique_ptr<Task> make_pathfinder_task();
std::unique_ptr<Task> make_pathx_task();

const std::vector<std::unique_ptr<Task>>& task_registry() {
  static const std::vector<std::unique_ptr<Task>> registry = [] {
    std::vector<std::unique_ptr<Task>> r;
    r.push_back(make_listops_task());
    r.push_back(make_text_task());
    r.push_back(make_retrieval_task());
    r.push_back(make_image_task());
    r.push_back(make_pathfinder_task());
    r.push_back(make_pathx_task());
    return r;
  }();
  return registry;
}

std::vector<std::string> task_names() {
  std::vector<std::string> names;
  for (const auto& t : task_registry()) names.push_back(t->name());
  return names;
}

const Task& find_task(const std::string& name) {
  for (const auto& t : task_registry())
    if (t->name() == name) return *t;
  LRA_FAIL("unknown task '{}'; valid tasks: {} (see `lra list tasks`)", name, fmt::join(task_names(), ", "));
}

std::string default_cache_dir() {
  if (const char* d = std::getenv("LRA_CACHE_DIR"); d != nullptr && *d != '\0') return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d != '\0') return std::string(d) + "/lra";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return std::string(h) + "/.cache/lra";
  return ".lra-cache";
}

nlohmann::json DatasetInfo::to_json(size_t n_train, size_t n_val, size_t n_test) const {
  nlohmann::json j;
  j["name"] = name;
  j["source"] = source;
  j["path"] = path;
  if (generated) j["generator_seed"] = generator_seed;
  if (!generator.empty()) j["generator"] = generator;
  nlohmann::json f = nlohmann::json::array();
  for (const auto& [p, sum] : files) f.push_back({{"path", p}, {"checksum", sum}});
  j["files"] = f;
  j["n_train"] = n_train;
  j["n_val"] = n_val;
  j["n_test"] = n_test;
  return j;
}

void check_split_sizes(const DataOptions& opt) {
  for (const auto& [n, option] : {std::pair{opt.n_train, "n_train"}, {opt.n_val, "n_val"}, {opt.n_test, "n_test"}})
    LRA_CHECK(n >= 0, "{} must not be negative (got {}); use 0 for the default", option, n);
}

nlohmann::json lra_text_task_config(const nlohmann::json& task_keys) {
  nlohmann::json c = {{"batch_size", 32},
                      {"learning_rate", 0.05},
                      {"factors", "constant * linear_warmup * rsqrt_decay"},
                      {"weight_decay", 0.1},
                      {"beta1", 0.9},
                      {"beta2", 0.98},
                      {"adam_eps", 1e-9},
                      {"dropout_rate", 0.1},
                      {"attention_dropout_rate", 0.1},
                      {"classifier_pool", "CLS"},
                      {"learn_pos_emb", false},
                      {"grad_clip_norm", 0.0}};
  c.update(task_keys);
  return c;
}

nlohmann::json resolve_task_params(const Task& task, const nlohmann::json& given) {
  const auto params = task.params();
  nlohmann::json out = nlohmann::json::object();
  for (const HyperParam& p : params) out[p.name] = p.default_value;
  std::vector<std::string> names;
  for (const HyperParam& p : params) names.push_back(p.name);
  for (auto it = given.begin(); it != given.end(); ++it) {
    LRA_CHECK(out.contains(it.key()), "task '{}' has no option '{}'; its options: {}", task.name(), it.key(),
              names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", ")));
    const nlohmann::json& d = out[it.key()];
    const bool same = (d.is_number() && it.value().is_number()) || d.type() == it.value().type();
    LRA_CHECK(same, "task option '{}' expects a value like {}, got {}", it.key(), d.dump(), it.value().dump());
    out[it.key()] = it.value();
  }
  return out;
}

Batch make_batch(const Split& split, const std::vector<size_t>& idx, int max_length) {
  LRA_CHECK(split.docs >= 1 && split.num_docs() == split.size() * static_cast<size_t>(split.docs),
            "a split of {} examples holds {} documents, not {} per example", split.size(), split.num_docs(),
            split.docs);
  Batch b;
  b.B = static_cast<int>(idx.size());
  b.docs = split.docs;
  b.L_pad = max_length;
  b.offsets.reserve(idx.size() * static_cast<size_t>(split.docs) + 1);
  b.offsets.push_back(0);
  b.labels.reserve(idx.size());
  for (size_t i : idx) {
    LRA_CHECK(i < split.size(), "example {} requested from a split of {}", i, split.size());
    b.labels.push_back(split.labels[i]);
  }
  // All first documents, then all second ones (Batch's layout for pairs).
  for (int k = 0; k < split.docs; ++k)
    for (size_t i : idx) {
      const size_t d = i * static_cast<size_t>(split.docs) + static_cast<size_t>(k);
      const int len = std::min(split.length(d), max_length);
      const uint16_t* t = split.tokens.data() + split.offsets[d];
      b.tokens.insert(b.tokens.end(), t, t + len);
      if (split.zero_is_padding)
        for (int j = 0; j < len; ++j) b.key_mask.push_back(t[j] != 0 ? 1 : 0);
      b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
    }
  return b;
}

}  // namespace lra
