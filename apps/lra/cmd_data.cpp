#include "cmd_data.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/common/download.h"
#include "tasks/listops/listops.h"
#include "tasks/pathfinder/pathfinder.h"
#include "tasks/task.h"
#include "train/config.h"

namespace lra {

namespace fs = std::filesystem;

void setup_data(CLI::App& data, DataStatusOptions& s, DataFetchOptions& f, DataGenerateOptions& g) {
  data.require_subcommand(1);
  CLI::App* status = data.add_subcommand(
      "status", "per task: the data `lra run` would use with these options and why, where it is, the examples per "
                "split and the files' checksums (nothing is generated)");
  status->add_option("--data-dir", s.data_dir, "folder with the official LRA files (as `lra run --data-dir`)")
      ->envname("LRA_DATA_DIR");
  status->add_option("--cache-dir", s.cache_dir, "where generated data is kept (default: $LRA_CACHE_DIR or "
                                                 "~/.cache/lra)");
  status->add_option("--task", s.task, "only this task (default: every task)")->check(CLI::IsMember(task_names()));
  status->add_option("--preset", s.preset, "the preset whose split sizes to report, as `lra run --preset`")
      ->capture_default_str();
  status->add_option("--set", s.sets, "config key=value as for `lra run` (n_train, data_seed; a task's own "
                                      "options need --task); repeatable")
      ->type_name("KEY=VALUE");
  status->add_flag("--json", s.json, "print JSON instead of a table");

  std::vector<std::string> fetchable = fetchable_tasks();
  fetchable.push_back("all");
  CLI::App* fetch = data.add_subcommand(
      "fetch", "download a task's official archive into --data-dir (resumable, MD5-checked where published) and "
               "extract what the task needs from LRA's release");
  fetch->add_option("task", f.task, "the task whose official files to fetch, or all")
      ->required()
      ->check(CLI::IsMember(fetchable));
  fetch->add_option("--data-dir", f.data_dir, "the folder to download into (`lra run --data-dir` reads it)")
      ->envname("LRA_DATA_DIR");
  fetch->add_option("--mirror", f.mirror, "a base URL to download from instead of the official one (the file name "
                                          "is appended); file:// works too")
      ->type_name("URL_PREFIX");
  fetch->add_flag("-q,--quiet", f.quiet, "no progress bar");

  CLI::App* generate = data.add_subcommand(
      "generate", "write generated data in the released layout (ListOps: listops-1000/; Pathfinder, Path-X: "
                  "pathfinder{R}/<difficulty>/) for `lra run --data-dir` and other harnesses");
  generate->add_option("task", g.task, "listops, pathfinder or pathx")->required();
  generate->add_option("--out", g.out, "the data folder to write into")->envname("LRA_DATA_DIR");
  generate->add_option("--seed", g.seed, "the generator's seed (`lra run` generates with data_seed, 0 by default)")
      ->capture_default_str();
  generate->add_option("--size", g.size,
                       "total examples, split as LRA's are (ListOps 96/2/2, default 100000; Pathfinder 80/10/10, "
                       "default 200000)");
  generate->add_option("--set", g.sets, "a task option key=value (pathfinder, pathx: difficulty, resolution); "
                                        "repeatable")
      ->type_name("KEY=VALUE");
  generate->add_flag("-q,--quiet", g.quiet, "no progress output");
}

namespace {

// ---- status ----

DataOptions status_options(const std::string& task, const DataStatusOptions& opt) {
  return data_options(resolve_config(task, "softmax", opt.preset, "", opt.sets), opt.data_dir, opt.cache_dir, true);
}

nlohmann::json status_json(const std::string& task, const DataStatus& st) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& [path, sum] : st.files) files.push_back({{"path", path}, {"checksum", sum}});
  nlohmann::json j = {{"task", task},       {"source", st.source},   {"dataset", st.dataset},
                      {"reason", st.reason}, {"path", st.path},       {"n_train", st.n_train},
                      {"n_val", st.n_val},   {"n_test", st.n_test},   {"generated", st.generated},
                      {"files", files},      {"details", st.details}};
  if (st.generated) {
    j["seed"] = st.seed;
    j["cached"] = st.cached;
  }
  return j;
}

void print_status_text(const DataStatusOptions& opt, const std::string& cache_dir, const nlohmann::json& rows) {
  fmt::print("data dir:  {}\n", opt.data_dir.empty() ? "(none: built-in data; give --data-dir or set LRA_DATA_DIR)"
                                                      : opt.data_dir);
  fmt::print("cache dir: {}\n", cache_dir);
  fmt::print("preset:    {} (split sizes as `lra run --preset {}` uses them)\n\n", opt.preset, opt.preset);
  fmt::print("{:<11} {:<10} {:>8} {:>7} {:>7}  {}\n", "task", "source", "train", "val", "test", "data");
  for (const auto& r : rows) {
    if (r.contains("error")) {
      fmt::print("{:<11} {:<10} {:>8} {:>7} {:>7}  {}\n", r["task"].get<std::string>(), "error", "-", "-", "-",
                 "see below");
      continue;
    }
    fmt::print("{:<11} {:<10} {:>8} {:>7} {:>7}  {}\n", r["task"].get<std::string>(), r["source"].get<std::string>(),
               r["n_train"].get<int64_t>(), r["n_val"].get<int64_t>(), r["n_test"].get<int64_t>(),
               r["dataset"].get<std::string>());
  }
  for (const auto& r : rows) {
    const std::string task = r["task"];
    fmt::print("\n{}\n", task);
    if (r.contains("error")) {
      fmt::print("  error  {}\n", r["error"].get<std::string>());
      continue;
    }
    fmt::print("  why    {}\n", r["reason"].get<std::string>());
    if (r["generated"].get<bool>()) {
      fmt::print("  seed   {}\n", r["seed"].get<uint64_t>());
      const std::string path = r["path"];
      if (path.empty())
        fmt::print("  cache  none: {}\n", r["details"].value("cache", std::string("generated in memory at each run")));
      else if (r["cached"].get<bool>())
        fmt::print("  cache  {} (generated already)\n", path);
      else
        fmt::print("  cache  {} (not generated yet: `lra run --task {}` generates it)\n", path, task);
    } else {
      fmt::print("  path   {}\n", r["path"].get<std::string>());
    }
    for (const auto& f : r["files"])
      fmt::print("  file   {}  {}\n", f["path"].get<std::string>(), f["checksum"].get<std::string>());
  }
}

// ---- generate ----

// Generated data never replaces what is there: an existing non-empty target is refused, before
// anything is generated and again before the finished folder is renamed into place.
void check_free(const fs::path& dir) {
  std::error_code ec;
  LRA_CHECK(!fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)),
            "'{}' already exists and is not empty; remove it or choose another --out", dir.string());
}

int generate_listops(const DataGenerateOptions& opt) {
  const int64_t n = opt.size > 0 ? opt.size : 100000;
  // LRA's 96,000 / 2,000 / 2,000 of 100,000, with at least one example in val and test.
  const int64_t held = std::max<int64_t>(1, (n * 2 + 50) / 100);
  listops::SplitSizes sizes;
  sizes.val = held;
  sizes.test = held;
  sizes.train = n - 2 * held;
  LRA_CHECK(sizes.train >= 1, "--size {} is too small to split 96/2/2 into train, val and test; use 3 or more", n);
  const fs::path dir = fs::path(opt.out) / "listops-1000";
  check_free(dir);
  if (!opt.quiet) {
    fmt::print(stderr, "generating ListOps (seed {}): {} examples ... ", opt.seed, n);
    std::fflush(stderr);
  }
  const Timer timer;
  const TaskData data = listops::generate(opt.seed, sizes);
  if (!opt.quiet) fmt::print(stderr, "done in {:.1f} s\n", timer.seconds());
  make_dirs(opt.out);
  const fs::path tmp = fs::path(opt.out) / fmt::format(".listops-1000.tmp.{}", static_cast<long>(getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  try {
    make_dirs(tmp.string());
    listops::write_tsv((tmp / "basic_train.tsv").string(), data.train);
    listops::write_tsv((tmp / "basic_val.tsv").string(), data.val);
    listops::write_tsv((tmp / "basic_test.tsv").string(), data.test);
    check_free(dir);
    fs::remove(dir, ec);
    fs::rename(tmp, dir, ec);
    LRA_CHECK(!ec, "could not move '{}' to '{}': {}", tmp.string(), dir.string(), ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  fmt::print("wrote {} ListOps examples (seed {}; {} train, {} val, {} test) to {}/basic_{{train,val,test}}.tsv\n", n,
             opt.seed, sizes.train, sizes.val, sizes.test, dir.string());
  fmt::print("use it with: lra run --task listops --data-dir {}\n", opt.out);
  return 0;
}

int generate_pathfinder(const Task& task, const DataGenerateOptions& opt, const nlohmann::json& params) {
  const int64_t n = opt.size > 0 ? opt.size : 200000;
  // The reader's 80/10/10 boundaries (rounded to the nearest image), so that it reads back these splits.
  const int64_t b1 = (n * 80 + 50) / 100, b2 = (n * 90 + 50) / 100;
  pathfinder::SplitSizes sizes;
  sizes.train = b1;
  sizes.val = b2 - b1;
  sizes.test = n - b2;
  LRA_CHECK(sizes.train >= 1 && sizes.val >= 1 && sizes.test >= 1,
            "--size {} is too small to split 80/10/10 into train, val and test; use 10 or more", n);
  const int resolution = params.at("resolution").get<int>();
  const std::string difficulty = params.at("difficulty").get<std::string>();
  const pathfinder::Params p = pathfinder::params_for(resolution, pathfinder::contour_length_of(difficulty));
  check_free(fs::path(opt.out) / fmt::format("pathfinder{}", resolution) /
             pathfinder::difficulty_folder(p.contour_length));
  if (!opt.quiet)
    fmt::print(stderr, "generating Pathfinder ({} px, {}, seed {}): {} images ...\n", resolution, difficulty, opt.seed,
               n);
  const Timer timer;
  const pathfinder::Dataset d = pathfinder::generate(opt.seed, p, sizes, !opt.quiet);
  if (!opt.quiet) fmt::print(stderr, "generated {} images in {:.1f} s; writing PNGs ...\n", n, timer.seconds());
  const std::string dir = pathfinder::write_released_layout(d, opt.out);
  fmt::print("wrote {} {} images ({} px, {}, seed {}; {} train, {} val, {} test) to {}\n", n, task.name(), resolution,
             difficulty, opt.seed, sizes.train, sizes.val, sizes.test, dir);
  // The options `lra run` needs to read these images rather than its defaults'.
  const nlohmann::json defaults = resolve_task_params(task, nlohmann::json::object());
  std::string extra;
  if (difficulty != defaults.at("difficulty")) extra += " --set difficulty=" + difficulty;
  if (resolution != defaults.at("resolution"))
    extra += fmt::format(" --set resolution={} --set max_length={}", resolution, resolution * resolution);
  fmt::print("use it with: lra run --task {} --data-dir {}{}\n", task.name(), opt.out, extra);
  return 0;
}

}  // namespace

int run_data_status(const DataStatusOptions& opt) {
  DataOptions probe;
  probe.data_dir = opt.data_dir;
  check_data_dir_exists(probe);
  const std::vector<std::string> tasks = opt.task.empty() ? task_names() : std::vector<std::string>{opt.task};
  nlohmann::json rows = nlohmann::json::array();
  bool failed = false;
  for (const std::string& name : tasks) {
    try {
      rows.push_back(status_json(name, find_task(name).data_status(status_options(name, opt))));
    } catch (const Error& e) {
      rows.push_back({{"task", name}, {"error", e.what()}});
      failed = true;
    }
  }
  const std::string cache_dir = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  if (opt.json)
    fmt::print("{}\n", nlohmann::json{{"data_dir", opt.data_dir},
                                      {"cache_dir", cache_dir},
                                      {"preset", opt.preset},
                                      {"tasks", rows}}
                           .dump(2));
  else
    print_status_text(opt, cache_dir, rows);
  return failed ? 1 : 0;
}

int run_data_fetch(const DataFetchOptions& opt) {
  LRA_CHECK(!opt.data_dir.empty(),
            "lra data fetch needs the folder to download into: give --data-dir D (or set LRA_DATA_DIR); `lra run "
            "--data-dir D` and `lra data status --data-dir D` then read it");
  const std::vector<std::string> tasks = opt.task == "all" ? fetchable_tasks() : std::vector<std::string>{opt.task};
  for (const FetchResult& r : fetch_official(tasks, opt.data_dir, opt.mirror, !opt.quiet)) {
    fmt::print("{}: {}: {}\n", r.task, r.archive, r.action);
    for (const std::string& f : r.extracted) fmt::print("{}: extracted {}\n", r.task, f);
    for (const std::string& f : r.present) fmt::print("{}: {} was already extracted\n", r.task, f);
  }
  fmt::print("check with: lra data status --data-dir {}\n", opt.data_dir);
  return 0;
}

int run_data_generate(const DataGenerateOptions& opt) {
  if (opt.task == "text")
    LRA_FAIL("the text task reads IMDB from the official aclImdb_v1.tar.gz (`lra data fetch text --data-dir D` "
             "downloads it); there is nothing to generate. Without it, `lra run --task text` uses its built-in "
             "stand-in");
  if (opt.task == "image")
    LRA_FAIL("the image task reads CIFAR-10 from the official cifar-10-binary.tar.gz (`lra data fetch image "
             "--data-dir D` downloads it); there is nothing to generate. Without it, `lra run --task image` uses "
             "Fashion-MNIST");
  if (opt.task == "retrieval")
    LRA_FAIL("the retrieval task reads the AAN pairs (tsv_data/new_aan_pairs.*.tsv) from LRA's release (`lra data "
             "fetch retrieval --data-dir D` downloads and extracts them); there is nothing to generate");
  const Task& task = find_task(opt.task);
  LRA_CHECK(!opt.out.empty(), "lra data generate needs the folder to write into: give --out D (or set LRA_DATA_DIR)");
  LRA_CHECK(opt.size >= 0, "--size must not be negative (got {}); leave it out for LRA's size", opt.size);
  nlohmann::json given = nlohmann::json::object();
  for (const std::string& s : opt.sets) {
    const auto [key, value] = parse_set(s);
    given[key] = value;
  }
  const nlohmann::json params = resolve_task_params(task, given);
  if (task.name() == "listops") return generate_listops(opt);
  if (task.name() == "pathfinder" || task.name() == "pathx") return generate_pathfinder(task, opt, params);
  LRA_FAIL("lra data generate writes listops, pathfinder and pathx; task '{}' has no generator to write", task.name());
}

}  // namespace lra
