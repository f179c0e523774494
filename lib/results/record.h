// Run records: one JSON file per run (schema_version 1), written atomically. Tools rely on the key
// names listed in required_record_keys().
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lra {

constexpr int kRecordSchemaVersion = 1;

// The machine and build a number was measured on: cpu, threads, compiler, build_type, git_sha,
// lra_version.
nlohmann::json env_json(int threads);

// Dotted paths every run record has (e.g. "metrics.test_accuracy").
const std::vector<std::string>& required_record_keys();
// The required keys missing from `record` (empty when complete).
std::vector<std::string> missing_record_keys(const nlohmann::json& record);

// Writes `record` to `path` atomically, pretty-printed.
void write_record(const std::string& path, const nlohmann::json& record);

// Median and percentile (linear interpolation) of a sample.
double percentile(std::vector<double> v, double q);

}  // namespace lra
