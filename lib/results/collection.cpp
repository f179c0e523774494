#include "results/collection.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>

#include "attn/attention.h"
#include "core/check.h"
#include "core/files.h"
#include "results/record.h"

namespace lra {

namespace fs = std::filesystem;

double RunEntry::test_accuracy_pct() const { return 100.0 * record.at("metrics").at("test_accuracy").get<double>(); }

namespace {

// The JSON types the report, compare and reproduce read a record's fields as. A field of another type
// makes the file "not a readable record": named and skipped, like a truncated one, rather than failing
// the whole report.
enum class Need { String, Number, NumberOrNull, Integer, Int, Bool, Object, Array };

bool has(const nlohmann::json& v, Need need) {
  switch (need) {
    case Need::String: return v.is_string();
    case Need::Number: return v.is_number();
    case Need::NumberOrNull: return v.is_number() || v.is_null();  // null: how JSON writes a NaN
    case Need::Integer: return v.is_number_integer();
    // An integer that fits an int: what lengths, sizes, threads and steps are read as.
    case Need::Int:
      return v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(INT32_MAX)
                                    : v.is_number_integer() && v.get<int64_t>() >= INT32_MIN &&
                                          v.get<int64_t>() <= INT32_MAX;
    case Need::Bool: return v.is_boolean();
    case Need::Object: return v.is_object();
    case Need::Array: return v.is_array();
  }
  return false;
}

const char* need_name(Need need) {
  switch (need) {
    case Need::String: return "a string";
    case Need::Number: return "a number";
    case Need::NumberOrNull: return "a number or null";
    case Need::Integer: return "an integer";
    case Need::Int: return "an integer of at most 2^31 - 1";
    case Need::Bool: return "true or false";
    case Need::Object: return "an object";
    case Need::Array: return "an array";
  }
  return "?";
}

struct Field {
  const char* pointer;  // a JSON pointer, "/env/threads"
  Need need;
};

// "" when each of `fields` that `j` has is of its type; else what is wrong with the first that is not.
std::string check_fields(const nlohmann::json& j, std::initializer_list<Field> fields, const std::string& where = "") {
  for (const Field& f : fields) {
    const nlohmann::json::json_pointer ptr(f.pointer);
    if (!j.contains(ptr) || has(j.at(ptr), f.need)) continue;
    std::string name = std::string(f.pointer).substr(1);
    std::replace(name.begin(), name.end(), '/', '.');
    return fmt::format("{}'{}' is not {}", where, name, need_name(f.need));
  }
  return {};
}

// Reads one run record's identity, or says why it cannot be used.
std::string read_run(const std::string& path, const nlohmann::json& j, RunEntry& e) {
  for (const char* key : {"task", "attn", "preset", "status"})
    if (!j.contains(key) || !j[key].is_string()) return fmt::format("run record without a string '{}'", key);
  if (!j.contains("seed") || !j["seed"].is_number_unsigned()) return "run record without a non-negative 'seed'";
  if (std::string why = check_fields(j, {{"/run_id", Need::String},         {"/started_at", Need::String},
                                         {"/ended_at", Need::String},       {"/error", Need::String},
                                         {"/checkpoint", Need::String},     {"/wall_seconds", Need::Number},
                                         {"/config", Need::Object},         {"/dataset", Need::Object},
                                         {"/dataset/name", Need::String},   {"/dataset/source", Need::String},
                                         {"/env", Need::Object},            {"/env/cpu", Need::String},
                                         {"/env/threads", Need::Int},       {"/env/git_sha", Need::String},
                                         {"/env/lra_version", Need::String}, {"/env/device", Need::Object},
                                         {"/env/device/gpu", Need::String}, {"/metrics", Need::Object},
                                         {"/metrics/steps_done", Need::Int}, {"/curve", Need::Array}},
                                     "run record whose ");
      !why.empty())
    return why;
  if (j.contains("curve"))
    for (const auto& point : j["curve"]) {
      if (!point.is_object()) return "run record whose 'curve' holds a point that is not an object";
      if (std::string why = check_fields(point, {{"/step", Need::Number}, {"/loss", Need::NumberOrNull},
                                                 {"/val_accuracy", Need::NumberOrNull}},
                                         "run record whose curve point's ");
          !why.empty())
        return why;
    }
  e.path = path;
  e.task = j["task"].get<std::string>();
  e.attn = j["attn"].get<std::string>();
  e.preset = j["preset"].get<std::string>();
  e.status = j["status"].get<std::string>();
  e.seed = j["seed"].get<uint64_t>();
  e.started_at = j.value("started_at", std::string());
  if (e.ok()) {
    const auto missing = missing_record_keys(j);
    if (!missing.empty()) return fmt::format("ok run record without {}", fmt::join(missing, ", "));
    if (std::string why = check_fields(j, {{"/metrics/test_accuracy", Need::Number},
                                           {"/metrics/val_accuracy", Need::Number},
                                           {"/metrics/best_val_accuracy", Need::Number},
                                           {"/metrics/test_loss", Need::Number},
                                           {"/speed/steps_per_sec", Need::Number},
                                           {"/speed/ms_per_step_median", Need::Number},
                                           {"/speed/examples_per_sec", Need::Number},
                                           {"/memory/peak_arena_bytes", Need::Number},
                                           {"/memory/peak_rss_bytes", Need::Number}},
                                       "ok run record whose ");
        !why.empty())
      return why;
  }
  e.record = j;
  return {};
}

std::string read_bench(const nlohmann::json& j) {
  if (!j.contains("rows") || !j["rows"].is_array()) return "bench record without rows";
  if (!j.contains("env") || !j["env"].is_object()) return "bench record without env";
  if (std::string why = check_fields(j, {{"/created", Need::String},    {"/config", Need::Object},
                                         {"/config/preset", Need::String}, {"/env/cpu", Need::String},
                                         {"/env/device", Need::Object}, {"/env/device/gpu", Need::String}},
                                     "bench record whose ");
      !why.empty())
    return why;
  for (const auto& r : j["rows"]) {
    if (!r.is_object()) return "bench row that is not an object";
    for (const char* key : {"attn", "mode", "device"})
      if (!r.contains(key) || !r[key].is_string()) return fmt::format("bench row without a string '{}'", key);
    for (const char* key : {"len", "batch", "heads", "dim", "threads"})
      if (!r.contains(key) || !has(r[key], Need::Int)) return fmt::format("bench row without an integer '{}'", key);
    for (const char* key : {"ms_median", "peak_arena_bytes"})
      if (!r.contains(key) || !r[key].is_number()) return fmt::format("bench row without a number '{}'", key);
    if (!r.contains("causal") || !r["causal"].is_boolean()) return "bench row without a boolean 'causal'";
    if (r["heads"].get<int>() <= 0) return "bench row whose 'heads' is not positive";
    if (std::string why = check_fields(r, {{"/steps", Need::Int}, {"/warmup", Need::Int}, {"/seed", Need::Integer},
                                           {"/attn_params", Need::Object}, {"/attn_params/store_probs", Need::Bool}},
                                       "bench row whose ");
        !why.empty())
      return why;
  }
  return {};
}

void load_file(const std::string& path, RecordSet& set) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const std::exception& e) {
    set.skipped.push_back(fmt::format("{}: not valid JSON ({})", path, e.what()));
    return;
  }
  if (!j.is_object()) {
    set.skipped.push_back(fmt::format("{}: not a JSON object", path));
    return;
  }
  if (j.contains("kind") && !j["kind"].is_string()) {
    set.skipped.push_back(fmt::format("{}: its 'kind' is not a string", path));
    return;
  }
  const std::string kind = j.value("kind", std::string());
  if (kind.rfind("published_", 0) == 0) return;
  if (kind == "bench_attn") {
    if (const std::string why = read_bench(j); !why.empty()) {
      set.skipped.push_back(fmt::format("{}: {}", path, why));
      return;
    }
    set.benches.push_back({path, std::move(j)});
    return;
  }
  if (!kind.empty()) {
    set.skipped.push_back(fmt::format("{}: a record of kind '{}', which lra report does not read", path, kind));
    return;
  }
  if (!j.contains("schema_version")) {
    set.skipped.push_back(fmt::format("{}: neither a run record nor a bench record (no schema_version)", path));
    return;
  }
  RunEntry e;
  if (const std::string why = read_run(path, j, e); !why.empty()) {
    set.skipped.push_back(fmt::format("{}: {}", path, why));
    return;
  }
  set.runs.push_back(std::move(e));
}

}  // namespace

RecordSet load_records(const std::vector<std::string>& paths) {
  RecordSet set;
  for (const auto& p : paths) {
    std::error_code ec;
    LRA_CHECK(fs::exists(p, ec),
              "'{}' does not exist; give run records or folders of them (lra run writes them "
              "to results/runs by default)",
              p);
    if (!fs::is_directory(p, ec)) {
      load_file(p, set);
      continue;
    }
    std::vector<std::string> files;
    for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file(ec) && it->path().extension() == ".json") files.push_back(it->path().string());
    }
    LRA_CHECK(!ec, "could not list the folder '{}': {}", p, ec.message());
    std::sort(files.begin(), files.end());  // the same order on every file system
    for (const auto& f : files) load_file(f, set);
  }
  return set;
}

bool data_comparable(const nlohmann::json& record, std::string* why) {
  const nlohmann::json ds = record.value("dataset", nlohmann::json::object());
  const std::string name = ds.value("name", std::string("?"));
  const std::string source = ds.value("source", std::string("?"));
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (source == "stand-in") {
    if (why) *why = fmt::format("{}: built-in stand-in data, not the paper's", name);
    return false;
  }
  if (lower.find("fashion") != std::string::npos) {
    if (why) *why = fmt::format("{}: Fashion-MNIST in place of CIFAR-10", name);
    return false;
  }
  if (why) *why = fmt::format("{} ({})", name, source == "generated" ? "LRA's generator" : source);
  return true;
}

bool config_matches(const nlohmann::json& have, const nlohmann::json& want, std::vector<std::string>* diffs) {
  bool same = true;
  auto differ = [&](const std::string& key, const nlohmann::json& a, const nlohmann::json& b) {
    same = false;
    if (diffs) diffs->push_back(fmt::format("{}: {} vs {}", key, a.dump(), b.dump()));
  };
  for (auto it = want.begin(); it != want.end(); ++it) {
    if (it.key() == "threads" || !have.contains(it.key())) continue;
    const nlohmann::json& h = have[it.key()];
    if ((it.key() == "attn_params" || it.key() == "task_params") && h.is_object() && it->is_object()) {
      for (auto p = it->begin(); p != it->end(); ++p)
        if (h.contains(p.key()) && h[p.key()] != p.value()) differ(it.key() + "." + p.key(), h[p.key()], p.value());
      continue;
    }
    if (h != *it) differ(it.key(), h, *it);
  }
  return same;
}

std::vector<std::string> config_changes(const nlohmann::json& config, const nlohmann::json& base) {
  std::vector<std::string> out;
  auto text = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  for (auto it = config.begin(); it != config.end(); ++it) {
    if (it.key() == "seed" || it.key() == "threads" || !base.contains(it.key())) continue;
    const nlohmann::json& b = base[it.key()];
    if ((it.key() == "attn_params" || it.key() == "task_params") && b.is_object() && it->is_object()) {
      for (auto p = it->begin(); p != it->end(); ++p)
        if (b.contains(p.key()) && b[p.key()] != p.value())
          out.push_back(fmt::format("{}.{}={}", it.key(), p.key(), text(p.value())));
      continue;
    }
    if (b != *it) out.push_back(fmt::format("{}={}", it.key(), text(*it)));
  }
  return out;
}

std::map<const RunEntry*, std::vector<std::string>> run_changes(const std::vector<const RunEntry*>& runs,
                                                                const PresetConfig& preset_config) {
  std::map<std::string, nlohmann::json> base;  // by "task attn preset"
  std::map<std::string, const RunEntry*> latest;
  for (const RunEntry* e : runs) {
    const RunEntry*& slot = latest[e->task + " " + e->attn + " " + e->preset];
    if (slot == nullptr || e->started_at > slot->started_at) slot = e;
  }
  std::map<const RunEntry*, std::vector<std::string>> out;
  for (const RunEntry* e : runs) {
    const std::string key = e->task + " " + e->attn + " " + e->preset;
    auto it = base.find(key);
    if (it == base.end()) {
      nlohmann::json b;
      if (preset_config) {
        try {
          b = preset_config(e->task, e->attn, e->preset);
        } catch (const std::exception&) {
          b = nullptr;  // a task or variant this build does not have
        }
      }
      if (!b.is_object()) b = latest[key]->record.value("config", nlohmann::json::object());
      it = base.emplace(key, std::move(b)).first;
    }
    out[e] = config_changes(e->record.value("config", nlohmann::json::object()), it->second);
  }
  return out;
}

std::vector<std::string> common_changes(const std::vector<const RunEntry*>& runs,
                                        const std::map<const RunEntry*, std::vector<std::string>>& changes) {
  if (runs.empty()) return {};
  std::vector<std::string> common = changes.at(runs[0]);
  for (const RunEntry* e : runs) {
    const auto& c = changes.at(e);
    common.erase(std::remove_if(common.begin(), common.end(),
                                [&](const std::string& s) { return std::find(c.begin(), c.end(), s) == c.end(); }),
                 common.end());
  }
  return common;
}

std::string changes_label(const std::vector<std::string>& changes, const std::vector<std::string>& common) {
  std::vector<std::string> own;
  for (const auto& c : changes)
    if (std::find(common.begin(), common.end(), c) == common.end()) own.push_back(c);
  return fmt::format("{}", fmt::join(own, ", "));
}

std::string describe_hardware(const nlohmann::json& env) {
  const int threads = env.value("threads", 0);
  std::string s =
      fmt::format("{}, {} thread{}", env.value("cpu", std::string("unknown CPU")), threads, threads == 1 ? "" : "s");
  if (env.contains("device") && env["device"].is_object() && env["device"].contains("gpu"))
    s += fmt::format(", GPU {}", env["device"]["gpu"].get<std::string>());
  return s;
}

std::vector<std::string> report_attention_order() {
  std::vector<std::string> order = {"softmax",  "local",       "sparse",  "longformer", "linformer", "reformer",
                                    "sinkhorn", "synthesizer", "bigbird", "linear",     "performer"};
  for (const auto& name : attention_names())
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  return order;
}

}  // namespace lra
