#include "results/compare.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "core/check.h"

namespace lra {

namespace {

// Flattens a config into dotted keys (attn_params.k, task_params.k).
std::map<std::string, std::string> flatten(const nlohmann::json& config) {
  std::map<std::string, std::string> out;
  for (auto it = config.begin(); it != config.end(); ++it) {
    if (it->is_object()) {
      for (auto p = it->begin(); p != it->end(); ++p) out[it.key() + "." + p.key()] = p->dump();
      continue;
    }
    out[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return out;
}

// mean +- std (n) of the values, or the single value.
std::string summary(const std::vector<double>& v, int decimals) {
  if (v.empty()) return "";
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  if (v.size() == 1) return format_number(m, decimals);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return fmt::format("{} \u00b1 {} (n={})", format_number(m, decimals),
                     format_number(std::sqrt(s / static_cast<double>(v.size() - 1)), decimals), v.size());
}

// The distinct values of `f` over the runs, joined.
std::string distinct(const std::vector<const RunEntry*>& runs, const std::function<std::string(const RunEntry&)>& f) {
  std::vector<std::string> seen;
  for (const RunEntry* e : runs) {
    const std::string v = f(*e);
    if (!v.empty() && std::find(seen.begin(), seen.end(), v) == seen.end()) seen.push_back(v);
  }
  return fmt::format("{}", fmt::join(seen, "; "));
}

std::string duration(double s) {
  // A record's wall time is whatever its file says: only a value that fits a long is rounded to one.
  if (!(std::fabs(s) < 1e15)) return fmt::format("{:g}s", s);
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

}  // namespace

std::vector<CompareColumn> columns_per_run(const RecordSet& records) {
  std::vector<CompareColumn> cols;
  for (const RunEntry& e : records.runs)
    cols.push_back({e.record.value("run_id", std::filesystem::path(e.path).stem().string()), {&e}});
  return cols;
}

std::vector<CompareColumn> columns_per_variant(const RecordSet& records, const std::string& task,
                                               const std::string& preset, const std::vector<std::string>& attns,
                                               const PresetConfig& preset_config) {
  std::set<std::string> presets, found;
  for (const RunEntry& e : records.runs)
    if (e.task == task) presets.insert(e.preset);
  LRA_CHECK(!presets.empty(), "no run records of task '{}' found; lra run --task {} writes one", task, task);
  LRA_CHECK(!preset.empty() || presets.size() == 1,
            "the runs of task '{}' use several presets ({}); choose one with --preset: runs of different presets are "
            "never compared as one variant",
            task, fmt::join(presets, ", "));
  const std::string use = preset.empty() ? *presets.begin() : preset;
  std::vector<const RunEntry*> mine;
  for (const RunEntry& e : records.runs)
    if (e.task == task && e.preset == use) mine.push_back(&e);
  const auto changes = run_changes(mine, preset_config);
  const auto common = common_changes(mine, changes);
  std::vector<CompareColumn> cols;
  for (const auto& attn : attns.empty() ? report_attention_order() : attns) {
    std::map<std::string, CompareColumn> by_config;  // the preset's config ("") first
    for (const RunEntry* e : mine) {
      if (e->attn != attn) continue;
      const std::string config = changes_label(changes.at(e), common);
      CompareColumn& c = by_config[config];
      c.label = config.empty() ? attn : fmt::format("{} [{}]", attn, config);
      c.runs.push_back(e);
    }
    for (auto& [config, c] : by_config) cols.push_back(std::move(c));
  }
  LRA_CHECK(!cols.empty(), "no run records of task '{}' with preset '{}'{} found (presets found: {})", task, use,
            attns.empty() ? std::string() : fmt::format(" and variants {}", fmt::join(attns, ", ")),
            fmt::join(presets, ", "));
  return cols;
}

TableText compare_table(const std::vector<CompareColumn>& columns) {
  TableText t;
  t.id = "compare";
  t.title = "Comparison";
  t.label_columns = 1;
  t.header = {""};
  for (const auto& c : columns) t.header.push_back(c.label);
  std::vector<std::string> hardware;
  for (const auto& c : columns)
    for (const RunEntry* e : c.runs)
      if (e->record.contains("env")) {
        const std::string h = describe_hardware(e->record["env"]);
        if (std::find(hardware.begin(), hardware.end(), h) == hardware.end()) hardware.push_back(h);
      }
  t.context.push_back(fmt::format("Measured on: {}", fmt::join(hardware, "; ")));

  auto row = [&](const std::string& name, const std::function<std::string(const CompareColumn&)>& cell) {
    std::vector<std::string> r = {name};
    for (const auto& c : columns) r.push_back(cell(c));
    t.rows.push_back(r);
    t.row_kind.push_back("ours");
  };
  auto ok_values = [](const CompareColumn& c, const std::function<double(const RunEntry&)>& f) {
    std::vector<double> v;
    for (const RunEntry* e : c.runs)
      if (e->ok()) v.push_back(f(*e));
    return v;
  };
  auto metric = [&](const std::string& name, int decimals, const std::function<double(const RunEntry&)>& f) {
    row(name, [&](const CompareColumn& c) { return summary(ok_values(c, f), decimals); });
  };
  row("task", [&](const CompareColumn& c) { return distinct(c.runs, [](const RunEntry& e) { return e.task; }); });
  row("attn", [&](const CompareColumn& c) { return distinct(c.runs, [](const RunEntry& e) { return e.attn; }); });
  row("preset", [&](const CompareColumn& c) { return distinct(c.runs, [](const RunEntry& e) { return e.preset; }); });
  row("seeds", [&](const CompareColumn& c) {
    std::vector<std::string> s;
    for (const RunEntry* e : c.runs) s.push_back(std::to_string(e->seed));
    return fmt::format("{}", fmt::join(s, " "));
  });
  row("status", [&](const CompareColumn& c) {
    std::map<std::string, int> n;
    for (const RunEntry* e : c.runs) ++n[e->status];
    std::vector<std::string> parts;
    for (const auto& [status, count] : n)
      parts.push_back(c.runs.size() == 1 ? status : fmt::format("{} {}", count, status));
    return fmt::format("{}", fmt::join(parts, ", "));
  });
  row("data", [&](const CompareColumn& c) {
    return distinct(c.runs, [](const RunEntry& e) {
      std::string why;
      data_comparable(e.record, &why);
      return e.record.contains("dataset") ? why : std::string();
    });
  });
  metric("test accuracy (%)", 2, [](const RunEntry& e) { return e.test_accuracy_pct(); });
  metric("val accuracy, last (%)", 2,
         [](const RunEntry& e) { return 100 * e.record["metrics"]["val_accuracy"].get<double>(); });
  metric("best val accuracy (%)", 2,
         [](const RunEntry& e) { return 100 * e.record["metrics"]["best_val_accuracy"].get<double>(); });
  metric("test loss", 4, [](const RunEntry& e) { return e.record["metrics"]["test_loss"].get<double>(); });
  metric("final training loss", 4, [](const RunEntry& e) {
    const auto& curve = e.record["curve"];
    if (curve.empty()) return std::nan("");
    const auto& last = curve.back();  // a loss of null is a NaN as JSON writes it
    return last.contains("loss") && last["loss"].is_number() ? last["loss"].get<double>() : std::nan("");
  });
  metric("steps/s", 2, [](const RunEntry& e) { return e.record["speed"]["steps_per_sec"].get<double>(); });
  metric("ms/step (median)", 1,
         [](const RunEntry& e) { return e.record["speed"]["ms_per_step_median"].get<double>(); });
  metric("examples/s", 1, [](const RunEntry& e) { return e.record["speed"]["examples_per_sec"].get<double>(); });
  metric("peak arena MiB", 1,
         [](const RunEntry& e) { return e.record["memory"]["peak_arena_bytes"].get<double>() / 1048576.0; });
  metric("peak RSS MiB", 1,
         [](const RunEntry& e) { return e.record["memory"]["peak_rss_bytes"].get<double>() / 1048576.0; });
  row("parameters", [&](const CompareColumn& c) {
    return distinct(c.runs, [](const RunEntry& e) {
      return e.record.contains("num_params") ? e.record["num_params"].dump() : std::string();
    });
  });
  row("wall time", [&](const CompareColumn& c) {
    std::vector<double> v;
    for (const RunEntry* e : c.runs) v.push_back(e->record.value("wall_seconds", 0.0));
    double m = 0;
    for (double x : v) m += x;
    return v.empty() ? std::string() : duration(m / static_cast<double>(v.size())) + (v.size() > 1 ? " (mean)" : "");
  });
  row("error", [&](const CompareColumn& c) {
    return distinct(c.runs, [](const RunEntry& e) { return e.record.value("error", std::string()); });
  });
  if (std::all_of(t.rows.back().begin() + 1, t.rows.back().end(), [](const std::string& s) { return s.empty(); })) {
    t.rows.pop_back();
    t.row_kind.pop_back();
  }

  // The config values on which the columns differ (a column whose seeds disagree shows each value).
  std::vector<std::map<std::string, std::vector<std::string>>> flat;
  std::set<std::string> keys;
  for (const auto& c : columns) {
    std::map<std::string, std::vector<std::string>> merged;
    for (const RunEntry* e : c.runs)
      for (const auto& [k, v] : flatten(e->record.value("config", nlohmann::json::object()))) {
        keys.insert(k);
        auto& seen = merged[k];
        if (std::find(seen.begin(), seen.end(), v) == seen.end()) seen.push_back(v);
      }
    flat.push_back(std::move(merged));
  }
  for (const auto& k : keys) {
    if (k == "seed" || k == "task" || k == "attn" || k == "preset") continue;  // shown above
    std::vector<std::vector<std::string>> vals;
    for (const auto& f : flat) vals.push_back(f.count(k) ? f.at(k) : std::vector<std::string>{"(not set)"});
    const bool differ = std::any_of(
        vals.begin(), vals.end(), [&](const std::vector<std::string>& v) { return v != vals.front() || v.size() > 1; });
    if (!differ) continue;
    std::vector<std::string> r = {"config: " + k};
    for (const auto& v : vals) r.push_back(fmt::format("{}", fmt::join(v, " / ")));
    t.rows.push_back(r);
    t.row_kind.push_back("diff");
  }
  return t;
}

}  // namespace lra
