#include "results/published.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/files.h"

namespace lra {

namespace fs = std::filesystem;

namespace {

const PublishedValue* find_value(const std::vector<PublishedValue>& values,
                                 const std::function<bool(const PublishedValue&)>& match) {
  const auto it = std::find_if(values.begin(), values.end(), match);
  return it == values.end() ? nullptr : &*it;
}

std::string row_label(const PublishedValue* v) {
  return v == nullptr ? std::string() : fmt::format("{} {}: {}", paper_short(v->paper), v->table, v->row);
}

PublishedValue parse_value(const nlohmann::json& j, const std::string& kind) {
  PublishedValue v;
  const std::initializer_list<std::pair<const char*, std::string*>> fields = {
      {"paper", &v.paper}, {"table", &v.table}, {"row", &v.row}, {"column", &v.column}, {"attn", &v.attn}};
  for (auto [key, field] : fields) *field = j.at(key).get<std::string>();
  if (kind == "published_accuracy") {
    v.task = j.at("task").get<std::string>();
  } else {
    v.metric = j.at("metric").get<std::string>();
    LRA_CHECK(v.metric == "steps_per_sec" || v.metric == "memory_gb",
              "metric must be steps_per_sec or memory_gb, got '{}'", v.metric);
    const nlohmann::json& length = j.at("length");
    LRA_CHECK(length.is_number_integer() && length.get<int64_t>() > 0 && length.get<int64_t>() <= INT32_MAX,
              "length must be a positive integer, got {}", length.dump());
    v.length = length.get<int>();
  }
  if (!j.at("value").is_null()) v.value = j["value"].get<double>();
  if (j.contains("relative")) v.relative = j["relative"].get<double>();
  v.text = j.value("text", std::string());
  LRA_CHECK(v.value || !v.text.empty(), "a value without a number must have a text (e.g. \"FAIL\")");
  v.verified = j.at("verified").get<bool>();
  v.note = j.value("note", std::string());
  v.caveat = j.value("caveat", std::string());
  return v;
}

}  // namespace

const PublishedValue* Published::accuracy(const std::string& attn, const std::string& task) const {
  return find_value(values,
                    [&](const PublishedValue& v) { return v.metric.empty() && v.attn == attn && v.task == task; });
}

const PublishedValue* Published::efficiency(const std::string& attn, const std::string& metric, int length) const {
  return find_value(
      values, [&](const PublishedValue& v) { return v.metric == metric && v.attn == attn && v.length == length; });
}

std::string Published::accuracy_row(const std::string& attn) const {
  return row_label(find_value(values, [&](const PublishedValue& v) { return v.metric.empty() && v.attn == attn; }));
}

std::string Published::efficiency_row(const std::string& attn) const {
  return row_label(find_value(values, [&](const PublishedValue& v) { return !v.metric.empty() && v.attn == attn; }));
}

Published load_published(const std::string& dir) {
  Published p;
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json") paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  for (const auto& path : paths) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(path));
    } catch (const std::exception& e) {
      LRA_FAIL("published table '{}' is not valid JSON ({}); restore it from the repository", path, e.what());
    }
    PublishedFile f;
    f.path = path;
    const auto malformed = [&](const std::string& what) {
      LRA_FAIL("published table '{}' is malformed: {}; a table is an object of kind, title, source, notes (strings) "
               "and values (an array); restore it from the repository",
               path, what);
    };
    if (!j.is_object()) malformed("it is not a JSON object");
    for (const char* key : {"kind", "title", "source"})
      if (j.contains(key) && !j[key].is_string()) malformed(fmt::format("'{}' is not a string", key));
    f.kind = j.value("kind", std::string());
    LRA_CHECK(f.kind == "published_accuracy" || f.kind == "published_efficiency",
              "'{}' has kind '{}'; a published table's kind is published_accuracy or published_efficiency", path,
              f.kind);
    f.title = j.value("title", std::string());
    f.source = j.value("source", std::string());
    const nlohmann::json notes = j.value("notes", nlohmann::json::array());
    if (!notes.is_array() || !std::all_of(notes.begin(), notes.end(), [](const auto& n) { return n.is_string(); }))
      malformed("'notes' is not an array of strings");
    for (const auto& n : notes) f.notes.push_back(n.get<std::string>());
    if (!j.contains("values") || !j["values"].is_array()) malformed("it has no 'values' array");
    const nlohmann::json& values = j["values"];
    for (size_t i = 0; i < values.size(); ++i) {
      try {
        PublishedValue v = parse_value(values[i], f.kind);
        v.file = path;
        p.values.push_back(std::move(v));
      } catch (const std::exception& e) {
        LRA_FAIL(
            "'{}': values[{}] is malformed: {} (each value needs paper, table, row, column, attn, {}, value "
            "and verified)",
            path, i, e.what(), f.kind == "published_accuracy" ? "task" : "metric, length");
      }
    }
    p.files.push_back(std::move(f));
  }
  return p;
}

std::string find_published_dir(const std::string& given) {
  std::error_code ec;
  if (!given.empty()) {
    LRA_CHECK(fs::is_directory(given, ec),
              "--published '{}' is not a folder; give the folder of published tables "
              "(results/published in the repository)",
              given);
    return given;
  }
  for (const std::string& dir : {std::string("results/published"), std::string(LRA_SOURCE_DIR) + "/results/published"})
    if (fs::is_directory(dir, ec)) return dir;
  LRA_FAIL(
      "no results/published folder here or in the source tree ({}); give the published tables with --published "
      "DIR",
      LRA_SOURCE_DIR);
}

std::string paper_short(const std::string& paper) { return paper.substr(0, paper.find(" (")); }

}  // namespace lra
