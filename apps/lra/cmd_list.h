// `lra list tasks|attn`: print the registries.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace lra {

struct ListOptions {
  std::string what;
  bool json = false;
};

void setup_list(CLI::App& app, ListOptions& opt);
int run_list(const ListOptions& opt);

}  // namespace lra
