// `lra data status`: per task, the data `lra run` would use with the same options and why, where it
// is, the examples per split and the files' checksums, without generating anything.
// `lra data fetch`: download the official archives into the data folder (resumable, MD5-checked) and
// extract what the tasks need from LRA's release.
// `lra data generate`: write generated ListOps / Pathfinder / Path-X data in the released layout.
// `lra data show`: one example as the model sees it, with its label and the file and line it came from.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace lra {

struct DataStatusOptions {
  std::string data_dir;
  std::string cache_dir;
  std::string task;              // one task; empty = every registered task
  std::string preset = "cpu";    // as `lra run`: the preset decides the split sizes
  std::vector<std::string> sets;  // config keys, as `lra run --set`
  bool json = false;
};

struct DataFetchOptions {
  std::string task;  // a task name, or all
  std::string data_dir;
  std::string mirror;  // replaces the official base URL; the file name is appended
  bool quiet = false;
};

struct DataGenerateOptions {
  std::string task;
  std::string out;
  uint64_t seed = 0;
  int64_t size = 0;  // total examples; 0 = the size of LRA's data
  std::vector<std::string> sets;
  bool quiet = false;
};

struct DataShowOptions {
  std::string task;
  std::string split = "test";
  size_t index = 0;
  std::string data_dir;
  std::string cache_dir;
  std::string preset = "cpu";
  std::vector<std::string> sets;
  bool all_ids = false;
  std::string png;  // write an image example here
  bool json = false;
};

void setup_data(CLI::App& data, DataStatusOptions& status_opt, DataFetchOptions& fetch_opt,
                DataGenerateOptions& generate_opt);
int run_data_status(const DataStatusOptions& opt);
int run_data_fetch(const DataFetchOptions& opt);
int run_data_generate(const DataGenerateOptions& opt);
void setup_data_show(CLI::App& data, DataShowOptions& opt);
int run_data_show(const DataShowOptions& opt);

}  // namespace lra
