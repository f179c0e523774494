#include "cmd_list.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "attn/attention.h"
#include "backend/backend.h"
#include "tasks/task.h"

namespace lra {

void setup_list(CLI::App& app, ListOptions& opt) {
  app.add_option("what", opt.what, "tasks or attn")->required()->check(CLI::IsMember({"tasks", "attn"}));
  app.add_flag("--json", opt.json, "print JSON instead of text");
}

namespace {

int list_tasks(bool as_json) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : task_registry()) {
    nlohmann::json presets = nlohmann::json::object();
    for (const auto& [name, overrides] : t->presets()) presets[name] = overrides;
    nlohmann::json params = nlohmann::json::array();
    for (const auto& p : t->params()) params.push_back({{"name", p.name}, {"default", p.default_value}, {"help", p.help}});
    const TaskShape shape = t->shape(resolve_task_params(*t, nlohmann::json::object()));
    out.push_back({{"name", t->name()},
                   {"summary", t->summary()},
                   {"vocab_size", shape.vocab_size},
                   {"num_classes", shape.num_classes},
                   {"pairs", shape.pairs},
                   {"defaults", t->defaults()},
                   {"presets", presets},
                   {"params", params}});
  }
  if (as_json) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  for (const auto& t : out) {
    std::printf("%s\n  %s\n  vocab %d, %d classes, max_length %d\n", t["name"].get<std::string>().c_str(),
                t["summary"].get<std::string>().c_str(), t["vocab_size"].get<int>(), t["num_classes"].get<int>(),
                t["defaults"].value("max_length", 0));
    for (auto it = t["presets"].begin(); it != t["presets"].end(); ++it)
      std::printf("  preset %-6s %s\n", it.key().c_str(),
                  it.value().empty() ? "(LRA's official config)" : it.value().dump().c_str());
    for (const auto& p : t["params"])
      std::printf("  --set %s=%s  %s\n", p["name"].get<std::string>().c_str(), p["default"].dump().c_str(),
                  p["help"].get<std::string>().c_str());
  }
  return 0;
}

int list_attn(bool as_json) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& a : attention_registry()) {
    nlohmann::json params = nlohmann::json::array();
    for (const auto& p : a.params) params.push_back({{"name", p.name}, {"default", p.default_value}, {"help", p.help}});
    nlohmann::json devices = nlohmann::json::array();
    for (const DeviceEntry& d : device_registry())
      if (d.has_attention(a.name)) devices.push_back(device_name(d.device));
    out.push_back({{"name", a.name},
                   {"summary", a.summary},
                   {"complexity", a.complexity},
                   {"attention_dropout", a.uses_attention_dropout},
                   {"causal", a.no_causal.empty() ? nlohmann::json(true) : nlohmann::json(a.no_causal)},
                   {"devices", devices},
                   {"params", params}});
  }
  if (as_json) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  for (const auto& a : out) {
    std::printf("%s\n  %s\n  %s\n", a["name"].get<std::string>().c_str(), a["summary"].get<std::string>().c_str(),
                a["complexity"].get<std::string>().c_str());
    std::vector<std::string> devices = a["devices"].get<std::vector<std::string>>();
    std::printf("  runs on: %s\n", fmt::format("{}", fmt::join(devices, ", ")).c_str());
    if (!a["attention_dropout"].get<bool>()) std::printf("  attention_dropout_rate: not used by this variant\n");
    if (!a["causal"].is_boolean()) std::printf("  no causal mode: %s\n", a["causal"].get<std::string>().c_str());
    for (const auto& p : a["params"])
      std::printf("  --set %s=%s  %s\n", p["name"].get<std::string>().c_str(), p["default"].dump().c_str(),
                  p["help"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace

int run_list(const ListOptions& opt) { return opt.what == "tasks" ? list_tasks(opt.json) : list_attn(opt.json); }

}  // namespace lra
