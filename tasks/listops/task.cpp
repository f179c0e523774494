// The ListOps task: LRA's config, the presets, and loading from the release files or the
// generator's cache.
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/listops/listops.h"

namespace lra::listops {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFiles[] = {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"};

// The `cpu` preset: minutes on 2 cores, and it learns. ListOps models sit at the majority class
// (about 17%) until the CLS position learns to read the root operator at position 1, which alone
// is worth about 37% (measured on the generated validation set). With learned positions, no
// dropout (4000 steps are 1.3 epochs, so there is nothing to regularise yet) and one 64-wide layer,
// cosFormer left the plateau between steps 1000 and 2200 for each of seeds 0-5 at 11-13 steps/s;
// two layers were 2.3x slower per step and seed 2 was still on the plateau after 2000 steps.
nlohmann::json cpu_preset() {
  return {{"emb_dim", 64},          {"num_heads", 2},          {"num_layers", 1},
          {"qkv_dim", 64},          {"mlp_dim", 128},          {"batch_size", 32},
          {"num_train_steps", 4000}, {"warmup", 200},          {"eval_frequency", 200},
          {"learning_rate", 0.05},  {"dropout_rate", 0.0},     {"attention_dropout_rate", 0.0},
          {"learn_pos_emb", true}};
}

SplitSizes requested_sizes(const DataOptions& opt) {
  check_split_sizes(opt);
  SplitSizes s;
  if (opt.n_train > 0) s.train = opt.n_train;
  if (opt.n_val > 0) s.val = opt.n_val;
  if (opt.n_test > 0) s.test = opt.n_test;
  return s;
}

int resolved_max_length(const DataOptions& opt) {
  LRA_CHECK(opt.max_length >= 0, "max_length must not be negative (got {})", opt.max_length);
  return opt.max_length > 0 ? opt.max_length : kDefaultMaxLength;
}

void truncate(Split& s, int max_length) {
  bool longer = false;
  for (size_t i = 0; i < s.size() && !longer; ++i) longer = s.length(i) > max_length;
  if (!longer) return;
  Split t;
  std::vector<uint16_t> ids;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = s.tokens.begin() + static_cast<std::ptrdiff_t>(s.offsets[i]);
    ids.assign(b, b + std::min(s.length(i), max_length));
    t.add(ids, s.labels[i]);
  }
  t.origins = std::move(s.origins);
  s = std::move(t);
}

bool complete(const fs::path& dir) {
  std::error_code ec;
  for (const char* name : kFiles)
    if (!fs::is_regular_file(dir / name, ec)) return false;
  return true;
}

std::vector<std::pair<std::string, std::string>> checksums(const fs::path& dir) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const char* name : kFiles) {
    const std::string p = (dir / name).string();
    files.emplace_back(p, file_checksum(p));
  }
  return files;
}

TaskData load_files(const DataOptions& opt, const fs::path& dir) {
  const int max_length = resolved_max_length(opt);
  const bool subsample = opt.n_train > 0 || opt.n_val > 0 || opt.n_test > 0;
  if (!opt.quiet)
    fmt::print(stderr, "reading ListOps from {}{}\n", dir.string(),
               subsample ? fmt::format(" (the first {}/{}/{} train/val/test examples; 0 = all)",
                                       opt.n_train, opt.n_val, opt.n_test)
                         : "");
  TaskData data;
  data.train = read_tsv((dir / kFiles[0]).string(), opt.n_train, max_length);
  data.val = read_tsv((dir / kFiles[1]).string(), opt.n_val, max_length);
  data.test = read_tsv((dir / kFiles[2]).string(), opt.n_test, max_length);
  data.info.source = "files";
  data.info.path = dir.string();
  data.info.files = checksums(dir);
  if (subsample)
    data.info.generator = {{"subsample", "the first n examples of each file (0 = all)"},
                           {"n_train", opt.n_train},
                           {"n_val", opt.n_val},
                           {"n_test", opt.n_test}};
  return data;
}

nlohmann::json generator_json(const SplitSizes& sizes) {
  const GeneratorConfig cfg;
  return {{"max_depth", cfg.max_depth},   {"max_args", cfg.max_args}, {"min_length", cfg.min_length},
          {"max_length", cfg.max_length}, {"n_train", sizes.train},   {"n_val", sizes.val},
          {"n_test", sizes.test}};
}

TaskData load_generated(const DataOptions& opt, const fs::path& dir) {
  const SplitSizes sizes = requested_sizes(opt);
  const int max_length = resolved_max_length(opt);
  TaskData data;
  if (complete(dir)) {
    if (!opt.quiet)
      fmt::print(stderr, "ListOps (seed {}): using the cached data in {}\n", opt.data_seed,
                 dir.string());
    data.train = read_tsv((dir / kFiles[0]).string(), 0, max_length);
    data.val = read_tsv((dir / kFiles[1]).string(), 0, max_length);
    data.test = read_tsv((dir / kFiles[2]).string(), 0, max_length);
  } else {
    const int64_t total = sizes.train + sizes.val + sizes.test;
    if (!opt.quiet) {
      fmt::print(stderr, "generating ListOps (seed {}): {} examples ... ", opt.data_seed, total);
      std::fflush(stderr);
    }
    const Timer timer;
    data = generate(opt.data_seed, sizes);
    // The files go to a private folder renamed into place at the end, so an interrupted run never
    // leaves a cache folder that looks complete.
    const fs::path tmp = fmt::format("{}.tmp.{}", dir.string(), static_cast<long>(getpid()));
    std::error_code ec;
    fs::remove_all(tmp, ec);
    make_dirs(tmp.string());
    try {
      write_tsv((tmp / kFiles[0]).string(), data.train);
      write_tsv((tmp / kFiles[1]).string(), data.val);
      write_tsv((tmp / kFiles[2]).string(), data.test);
    } catch (const Error&) {
      fs::remove_all(tmp, ec);
      throw;
    }
    // A folder missing some of its files (an older run's) goes; a complete one is another process's, with
    // the same files, and stays: workers sharing a cache read it while this one finishes (rename(2) does
    // not replace a folder that has files, so the rename below then fails and this copy is dropped).
    if (!complete(dir)) fs::remove_all(dir, ec);
    fs::rename(tmp, dir, ec);
    if (ec) {
      // Another process may have finished the same folder first; its files are identical.
      const std::string reason = ec.message();
      fs::remove_all(tmp, ec);
      LRA_CHECK(complete(dir),
                "could not move the generated ListOps data into '{}': {}; check that "
                "the cache folder is writable or set --cache-dir",
                dir.string(), reason);
    }
    // What a later run reads from the cache: example i is line i + 2 (after the header) of its file.
    Split* splits[] = {&data.train, &data.val, &data.test};
    for (size_t k = 0; k < 3; ++k) {
      const std::string file = (dir / kFiles[k]).string();
      for (size_t i = 0; i < splits[k]->size(); ++i) splits[k]->origins.add(file, "line", static_cast<int64_t>(i) + 2);
      truncate(*splits[k], max_length);
    }
    if (!opt.quiet)
      fmt::print(stderr, "done in {:.1f} s, cached in {}\n", timer.seconds(), dir.string());
  }
  data.info.source = "generated";
  data.info.path = dir.string();
  data.info.generated = true;
  data.info.generator_seed = opt.data_seed;
  data.info.generator = generator_json(sizes);
  data.info.files = checksums(dir);
  return data;
}

// Where load() takes the data from, and why: the one decision that load() and data_status() share.
struct Source {
  bool files = false;
  fs::path dir;  // the folder of basic_{train,val,test}.tsv, or the generator's cache folder
  std::string reason;
};

Source choose_source(const DataOptions& opt) {
  check_data_dir_exists(opt);
  if (opt.data_dir.empty()) return {false, cache_path(opt), "no --data-dir was given"};
  std::vector<std::string> tried;
  const std::string dir = locate_data_dir(opt.data_dir, tried);
  if (!dir.empty()) return {true, dir, fmt::format("found {}, {} and {} in {}", kFiles[0], kFiles[1], kFiles[2], dir)};
  return {false, cache_path(opt),
          fmt::format("no ListOps files under '{}' (looked for {} in {})", opt.data_dir, kFiles[0],
                      fmt::join(tried, ", "))};
}

// The examples load() takes from a file of `available`: the first n (0 = all), as read_tsv does.
int64_t taken(int64_t n, int64_t available, const fs::path& file) {
  LRA_CHECK(n <= available,
            "the ListOps file '{}' has only {} examples but the first {} were asked for; lower "
            "n_train/n_val/n_test or leave them at 0 for all",
            file.string(), available, n);
  return n > 0 ? n : available;
}

class ListOpsTask final : public Task {
 public:
  std::string name() const override { return "listops"; }
  std::string summary() const override {
    return "ListOps: the value (0-9) of a nested MIN/MAX/MED/SM expression of up to 2000 tokens";
  }
  TaskShape shape(const nlohmann::json&) const override { return {kVocabSize, kNumClasses, false, ""}; }
  DocumentView view(const uint16_t* ids, size_t n) const override {
    DocumentView v;  // the tokens the model sees, by name
    for (size_t i = 0; i < n; ++i) {
      if (i > 0) v.text += ' ';
      v.text += token_name(ids[i]);
    }
    return v;
  }
  nlohmann::json defaults() const override {
    return lra_text_task_config({{"max_length", kDefaultMaxLength},
                                 {"emb_dim", 512},
                                 {"num_heads", 8},
                                 {"num_layers", 4},
                                 {"qkv_dim", 512},
                                 {"mlp_dim", 1024},
                                 {"warmup", 1000},
                                 {"num_train_steps", 5000},
                                 {"eval_frequency", 50}});
  }
  std::map<std::string, nlohmann::json> presets() const override {
    return {{"paper", nlohmann::json::object()}, {"cpu", cpu_preset()}};
  }
  TaskData load(const DataOptions& opt) const override { return listops::load(opt); }
  DataStatus data_status(const DataOptions& opt) const override { return listops::data_status(opt); }
};

}  // namespace

std::string cache_path(const DataOptions& opt) {
  const SplitSizes s = requested_sizes(opt);
  const std::string root = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  return (fs::path(root) / "listops" /
          fmt::format("seed{}-train{}-val{}-test{}", opt.data_seed, s.train, s.val, s.test))
      .string();
}

TaskData load(const DataOptions& opt) {
  const Source src = choose_source(opt);
  if (!src.files && !opt.data_dir.empty())
    fmt::print(stderr,
               "listops: {}: using LRA's generator instead (seed {}). Point --data-dir at the extracted "
               "lra_release folder or at listops-1000/ for the released files.\n",
               src.reason, opt.data_seed);
  TaskData data = src.files ? load_files(opt, src.dir) : load_generated(opt, src.dir);
  if (!src.files) data.info.generator["reason"] = src.reason;
  data.info.name = "listops";
  return data;
}

DataStatus data_status(const DataOptions& opt) {
  const Source src = choose_source(opt);
  DataStatus st;
  st.reason = src.reason;
  st.path = src.dir.string();
  if (src.files) {
    st.source = "files";
    st.dataset = "ListOps (LRA release)";
    st.n_train = taken(opt.n_train, count_tsv_examples((src.dir / kFiles[0]).string()), src.dir / kFiles[0]);
    st.n_val = taken(opt.n_val, count_tsv_examples((src.dir / kFiles[1]).string()), src.dir / kFiles[1]);
    st.n_test = taken(opt.n_test, count_tsv_examples((src.dir / kFiles[2]).string()), src.dir / kFiles[2]);
    st.files = checksums(src.dir);
    return st;
  }
  const SplitSizes sizes = requested_sizes(opt);
  st.source = "generated";
  st.dataset = "ListOps (LRA's generator)";
  st.n_train = sizes.train;
  st.n_val = sizes.val;
  st.n_test = sizes.test;
  st.generated = true;
  st.seed = opt.data_seed;
  st.cached = complete(src.dir);
  if (st.cached) st.files = checksums(src.dir);
  st.details = generator_json(sizes);
  return st;
}

}  // namespace lra::listops

namespace lra {

std::unique_ptr<Task> make_listops_task() { return std::make_unique<listops::ListOpsTask>(); }

}  // namespace lra
