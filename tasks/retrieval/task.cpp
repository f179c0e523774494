// The Retrieval task: LRA's matching config, the presets, the dual encoder's options, and loading AAN
// from the files (through the parsed-data cache) or the generated stand-in.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <filesystem>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/common/cache.h"
#include "tasks/retrieval/retrieval.h"

namespace lra::retrieval {

namespace fs = std::filesystem;

namespace {

// Bumped whenever the parse changes, so older caches are rebuilt.
constexpr const char* kParse = "aan tsv cut=10000 bytes id=byte+1 v1";
constexpr const char* kSplitNames[] = {"train", "eval", "test"};
constexpr const char* kStandInName = "retrieval stand-in (generated, not AAN)";

// The `cpu` preset: documents of 500 bytes (a pair is then 1000, the Text preset's length; LRA's 4000
// per document is eight times the work), one 64-wide layer, no dropout, and 2,000-pair val/test sets so
// that evaluations do not dominate a 2-core run. Pooling is MEAN: on the stand-in, one cosFormer layer
// with CLS pooling stayed at chance for 1500 steps (at 300 bytes) while MEAN pooling learned; with CLS
// a single layer must first learn to spread the CLS query's attention over every topic word.
nlohmann::json cpu_preset() {
  return {{"max_length", 500},      {"emb_dim", 64},         {"num_heads", 2},         {"num_layers", 1},
          {"qkv_dim", 64},           {"mlp_dim", 128},        {"batch_size", 32},       {"num_train_steps", 2000},
          {"warmup", 200},           {"eval_frequency", 250}, {"learning_rate", 0.05},  {"dropout_rate", 0.0},
          {"attention_dropout_rate", 0.0}, {"classifier_pool", "MEAN"}, {"n_val", 2000}, {"n_test", 2000}};
}

int resolved_max_length(const DataOptions& opt) {
  LRA_CHECK(opt.max_length >= 0, "max_length must not be negative (got {})", opt.max_length);
  return opt.max_length > 0 ? opt.max_length : kDefaultMaxLength;
}

// The first n pairs of s (n = 0 or more than it holds: all of them).
void keep_first(Split& s, int64_t n) {
  if (n <= 0 || static_cast<size_t>(n) >= s.size()) return;
  s.labels.resize(static_cast<size_t>(n));
  s.offsets.resize(static_cast<size_t>(n) * 2 + 1);
  s.tokens.resize(s.offsets.back());
}

// A cache key for the three files that does not read them: their names, sizes and modification times.
std::string listing(const fs::path& dir) {
  cache::Digest d;
  for (const char* name : kFiles) {
    const fs::path p = dir / name;
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    const auto mtime = fs::last_write_time(p, ec).time_since_epoch().count();
    d.add_field(fmt::format("{}|{}|{}", p.string(), size, mtime));
  }
  return d.hex();
}

// The source load() takes, decided in one place for load() and data_status().
struct Choice {
  std::string dir;     // the folder of the AAN files; "" = the stand-in
  std::string reason;  // why
};

Choice choose(const DataOptions& opt) {
  check_data_dir_exists(opt);
  std::vector<std::string> tried;
  Choice c;
  c.dir = find_aan(opt.data_dir, tried);
  if (!c.dir.empty()) {
    c.dir = fs::absolute(c.dir).lexically_normal().string();
    c.reason = fmt::format("found new_aan_pairs.{{train,eval,test}}.tsv in {}", c.dir);
  } else {
    c.reason = opt.data_dir.empty()
                   ? std::string("no --data-dir was given")
                   : fmt::format("no AAN files under '{}' (looked in {})", opt.data_dir, fmt::join(tried, ", "));
  }
  return c;
}

// The three AAN files, whole up to max_length, through the parsed-data cache.
cache::Loaded open_aan(const DataOptions& opt, const std::string& dir, int max_length) {
  const std::string key = fmt::format("{}|{}|{}|max_length={}", dir, listing(dir), kParse, max_length);
  cache::Digest name;
  name.add_field(dir);
  name.add_field(std::to_string(max_length));
  const std::string file = cache::cache_file(opt, "retrieval", fmt::format("aan-{:016x}", name.value()));
  if (!opt.quiet) fmt::print(stderr, "retrieval: AAN from {}\n", dir);
  return cache::load_or_build(file, key, "retrieval (AAN)", opt.quiet, [&] {
    cache::Entry e;
    e.meta["files"] = nlohmann::json::array();
    for (size_t k = 0; k < 3; ++k) {
      const std::string path = (fs::path(dir) / kFiles[k]).string();
      e.splits.emplace_back(kSplitNames[k], read_tsv(path, max_length));
      e.meta["files"].push_back({path, file_checksum(path)});
    }
    return e;
  });
}

std::vector<std::pair<std::string, std::string>> files_of(const cache::Loaded& loaded) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& f : loaded.entry.meta.at("files")) files.emplace_back(f[0].get<std::string>(), f[1].get<std::string>());
  return files;
}

TaskData load_aan(const DataOptions& opt, const std::string& dir) {
  const int max_length = resolved_max_length(opt);
  check_split_sizes(opt);
  cache::Loaded loaded = open_aan(opt, dir, max_length);
  TaskData data;
  data.train = std::move(loaded.entry.split("train"));
  data.val = std::move(loaded.entry.split("eval"));
  data.test = std::move(loaded.entry.split("test"));
  keep_first(data.train, opt.n_train);
  keep_first(data.val, opt.n_val);
  keep_first(data.test, opt.n_test);
  data.info.name = "aan (byte level, pairs)";
  data.info.source = "files";
  data.info.path = dir;
  data.info.files = files_of(loaded);
  data.info.generator = {{"encoding", "each text cut to 10000 bytes, id = byte + 1 (ByteTextEncoder), pad 0"},
                         {"max_length", max_length},
                         {"splits", "train = new_aan_pairs.train.tsv, val = .eval.tsv, test = .test.tsv"},
                         {"subsample", "the first n pairs of each file (0 = all)"},
                         {"n_train", opt.n_train},
                         {"n_val", opt.n_val},
                         {"n_test", opt.n_test},
                         {"cache", loaded.to_json()}};
  return data;
}

// The stand-in's split sizes: AAN's unless n_train / n_val / n_test say otherwise.
std::array<int64_t, 3> standin_sizes(const DataOptions& opt) {
  check_split_sizes(opt);
  return {opt.n_train > 0 ? opt.n_train : kAanSizes[0], opt.n_val > 0 ? opt.n_val : kAanSizes[1],
          opt.n_test > 0 ? opt.n_test : kAanSizes[2]};
}

nlohmann::json standin_json(const std::string& why, int max_length, const std::array<int64_t, 3>& n) {
  const StandInConfig cfg;
  return {{"reason", why},
          {"documents", "words of academic prose of max_length/2..max_length bytes with topic words: upper-case acronyms spelled with letters of their topic's own"},
          {"label", "1 when both documents have the same topic: the topic with more topic words over the whole "
                    "document (its own, against a decoy)"},
          {"topics", kStandInTopics},
          {"marker_rate", cfg.marker_rate},
          {"bias", {cfg.min_bias, cfg.max_bias}},
          {"max_length", max_length},
          {"n_train", n[0]},
          {"n_val", n[1]},
          {"n_test", n[2]}};
}

TaskData load_standin(const DataOptions& opt, const std::string& why) {
  const int max_length = resolved_max_length(opt);
  const auto n = standin_sizes(opt);
  fmt::print(stderr,
             "retrieval: {}: using the generated stand-in (pairs of documents that match when both are about the "
             "same topic; NOT AAN, so the accuracy is not comparable with LRA's Retrieval). Point --data-dir at "
             "the release's tsv_data/ (new_aan_pairs.*.tsv) for the real task.\n",
             why);
  if (!opt.quiet) fmt::print(stderr, "retrieval: generating {}/{}/{} stand-in pairs ... ", n[0], n[1], n[2]);
  const Timer timer;
  TaskData data;
  data.train = standin_split(opt.data_seed, kStandInTrain, n[0], max_length);
  data.val = standin_split(opt.data_seed, kStandInVal, n[1], max_length);
  data.test = standin_split(opt.data_seed, kStandInTest, n[2], max_length);
  if (!opt.quiet) fmt::print(stderr, "done in {:.1f} s\n", timer.seconds());
  data.info.name = kStandInName;
  data.info.source = "stand-in";
  data.info.generated = true;
  data.info.generator_seed = opt.data_seed;
  data.info.generator = standin_json(why, max_length, n);
  return data;
}

class RetrievalTask final : public Task {
 public:
  std::string name() const override { return "retrieval"; }
  std::string summary() const override {
    return "Retrieval: do two documents (AAN papers, 4000 bytes each) cite each other? A dual encoder with shared "
           "weights; a generated stand-in when no AAN files are found";
  }
  // LRA's matching config (lra_benchmarks/matching/configs/base_match_config.py).
  nlohmann::json defaults() const override {
    return lra_text_task_config({{"max_length", kDefaultMaxLength},
                                 {"emb_dim", 128},
                                 {"num_heads", 4},
                                 {"num_layers", 4},
                                 {"qkv_dim", 128},
                                 {"mlp_dim", 512},
                                 {"warmup", 8000},
                                 {"num_train_steps", 5000},
                                 {"eval_frequency", 100}});
  }
  std::map<std::string, nlohmann::json> presets() const override {
    return {{"paper", nlohmann::json::object()}, {"cpu", cpu_preset()}};
  }
  std::vector<HyperParam> params() const override {
    return {{"interaction", "nli",
             "how the head combines the two documents' pooled vectors u and v: \"nli\" = [u, v, u*v, u-v], as the "
             "LRA paper states (A.1.3, Eq. 1); \"concat\" = [u, v], what LRA's code runs (no config passes its "
             "interaction option)"}};
  }
  TaskShape shape(const nlohmann::json& task_params) const override {
    const std::string i = task_params.value("interaction", std::string("nli"));
    LRA_CHECK(i == "nli" || i == "concat",
              "retrieval: interaction must be \"nli\" ([u, v, u*v, u-v], the paper) or \"concat\" ([u, v], LRA's "
              "code), got \"{}\"",
              i);
    return {kVocabSize, kNumClasses, true, i};
  }
  DocumentView view(const uint16_t* ids, size_t n) const override { return byte_text_view(ids, n); }
  TaskData load(const DataOptions& opt) const override { return retrieval::load(opt); }
  DataStatus data_status(const DataOptions& opt) const override {
    const Choice c = choose(opt);
    const int max_length = resolved_max_length(opt);
    DataStatus s;
    s.reason = c.reason;
    if (c.dir.empty()) {
      const auto n = standin_sizes(opt);
      s.source = "stand-in";
      s.dataset = kStandInName;
      s.n_train = n[0];
      s.n_val = n[1];
      s.n_test = n[2];
      s.generated = true;
      s.seed = opt.data_seed;
      s.details = standin_json(c.reason, max_length, n);
      return s;
    }
    check_split_sizes(opt);
    DataOptions quiet = opt;
    quiet.quiet = true;
    const cache::Loaded loaded = open_aan(quiet, c.dir, max_length);
    const size_t counts[] = {loaded.entry.split("train").size(), loaded.entry.split("eval").size(),
                             loaded.entry.split("test").size()};
    const int64_t wanted[] = {opt.n_train, opt.n_val, opt.n_test};
    int64_t n[3];
    for (int k = 0; k < 3; ++k)
      n[k] = wanted[k] > 0 ? std::min<int64_t>(wanted[k], static_cast<int64_t>(counts[k]))
                           : static_cast<int64_t>(counts[k]);
    s.source = "files";
    s.dataset = "AAN (new_aan_pairs.*.tsv)";
    s.path = c.dir;
    s.n_train = n[0];
    s.n_val = n[1];
    s.n_test = n[2];
    s.files = files_of(loaded);
    s.details = {{"max_length", max_length}, {"cache", loaded.to_json()}};
    return s;
  }
};

}  // namespace

TaskData load(const DataOptions& opt) {
  const Choice c = choose(opt);
  return c.dir.empty() ? load_standin(opt, c.reason) : load_aan(opt, c.dir);
}

}  // namespace lra::retrieval

namespace lra {

std::unique_ptr<Task> make_retrieval_task() { return std::make_unique<retrieval::RetrievalTask>(); }

}  // namespace lra
