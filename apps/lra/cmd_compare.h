// `lra compare`: runs side by side (`lra compare RUN.json RUN.json ...`), or the variants of one task
// (`lra compare --task T [DIR]`, each column the seeds of one variant): accuracy, loss, speed, memory and
// the config values that differ.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace lra {

struct CompareOptions {
  std::vector<std::string> paths;
  std::string task;
  std::string preset;
  std::vector<std::string> attns;
  std::string format = "md";
  std::string out;
};

void setup_compare(CLI::App& app, CompareOptions& opt);
int run_compare(const CompareOptions& opt);

}  // namespace lra
