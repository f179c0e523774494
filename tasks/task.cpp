#include "tasks/task.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
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

DocumentView byte_text_view(const uint16_t* ids, size_t n) {
  DocumentView v;
  v.text.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const int b = static_cast<int>(ids[i]) - 1;
    if (b >= 0x20 && b < 0x7f && b != '\\')
      v.text += static_cast<char>(b);
    else if (b == '\\')
      v.text += "\\\\";
    else if (b == '\n')
      v.text += "\\n";
    else if (b == '\t')
      v.text += "\\t";
    else if (b < 0)
      v.text += "\\<pad>";
    else
      v.text += fmt::format("\\x{:02x}", b);
  }
  return v;
}

DocumentView pixel_view(const uint16_t* ids, size_t n, int width) {
  DocumentView v;
  const auto side = static_cast<size_t>(std::lround(std::sqrt(static_cast<double>(n))));
  v.width = side * side == n ? static_cast<int>(side) : width;
  v.height = v.width > 0 ? static_cast<int>((n + static_cast<size_t>(v.width) - 1) / static_cast<size_t>(v.width)) : 0;
  v.pixels.assign(static_cast<size_t>(v.width) * static_cast<size_t>(v.height), 0);
  for (size_t i = 0; i < n; ++i) v.pixels[i] = static_cast<uint8_t>(std::min<uint16_t>(ids[i], 255));
  return v;
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
  return resolve_hyperparams(task.params(), given, fmt::format("task '{}'", task.name()), "option");
}

}  // namespace lra
