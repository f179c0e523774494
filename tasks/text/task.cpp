// The Text task: LRA's text config (with the paper's 4K length), the presets, and loading IMDB from
// the files (through the parsed-data cache) or the generated stand-in.
//
// Splits, as LRA builds them: train = IMDB train; val = IMDB test (task option val_split = "test",
// LRA's choice, issue #3) or a held-out 10% of train (val_split = "train", which then trains on the
// other 90%); test = IMDB test. n_train / n_val / n_test take the first n of an order drawn from
// data_seed (a balanced random subset), kept in IMDB's order (neg then pos, by file name), so the
// result is the same from the folder and from the archive.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "core/check.h"
#include "core/rng.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/common/cache.h"
#include "tasks/text/text.h"

namespace lra::text {

namespace fs = std::filesystem;

namespace {

// The order of each IMDB split: Rng(data_seed, kShuffleStream + split).
constexpr uint64_t kShuffleStream = (8ull << 56) | (1ull << 52);
// Bumped whenever the parse changes, so older caches are rebuilt.
constexpr const char* kParse = "imdb bytes.strip() id=byte+1 order=neg,pos,name v1";

// The `cpu` preset: LRA's code length (1000), a one-layer 64-wide model, no dropout, and smaller
// val/test sets (2,000 and 5,000 of IMDB's 25,000 test reviews, a random subset) so that the periodic
// evaluations do not dominate the run on 2 cores.
nlohmann::json cpu_preset() {
  return {{"max_length", 1000},      {"emb_dim", 64},       {"num_heads", 2},       {"num_layers", 1},
          {"qkv_dim", 64},           {"mlp_dim", 128},      {"batch_size", 32},     {"num_train_steps", 2000},
          {"warmup", 200},           {"eval_frequency", 250}, {"learning_rate", 0.05}, {"dropout_rate", 0.0},
          {"attention_dropout_rate", 0.0}, {"n_val", 2000}, {"n_test", 5000}};
}

int resolved_max_length(const DataOptions& opt) {
  LRA_CHECK(opt.max_length >= 0, "max_length must not be negative (got {})", opt.max_length);
  return opt.max_length > 0 ? opt.max_length : kDefaultMaxLength;
}

std::string val_split_of(const DataOptions& opt) {
  const std::string v = opt.task_params.value("val_split", std::string("test"));
  LRA_CHECK(v == "test" || v == "train",
            "text: val_split must be \"test\" (LRA: validate on IMDB's test split) or \"train\" (a held-out 10% of "
            "train), got \"{}\"",
            v);
  return v;
}

std::vector<size_t> shuffled(size_t n, uint64_t seed, uint64_t stream) {
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t{0});
  Rng rng(seed, stream);
  for (size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[rng.below(i)]);
  return idx;
}

// The examples order[begin, begin + count) of `from`, kept in their original order (a split's
// order does not matter to training, which shuffles, nor to evaluation), truncated to max_length.
Split pick(const Split& from, const std::vector<size_t>& order, size_t begin, size_t count, int max_length) {
  std::vector<size_t> idx(order.begin() + static_cast<std::ptrdiff_t>(begin),
                          order.begin() + static_cast<std::ptrdiff_t>(begin + count));
  std::sort(idx.begin(), idx.end());
  Split s;
  std::vector<uint16_t> ids;
  for (size_t i : idx) {
    const auto b = from.tokens.begin() + static_cast<std::ptrdiff_t>(from.offsets[i]);
    ids.assign(b, b + std::min(from.length(i), max_length));
    s.add(ids, from.labels[i]);
    s.origins.copy(from.origins, i);
  }
  return s;
}

// All of `from` (moved, not copied), truncated to max_length.
Split whole(Split&& from, int max_length) {
  Split s = std::move(from);
  cache::truncate_in_place(s, max_length);
  return s;
}

// n_x (0 = all `available`); more than available is an error naming the option.
size_t wanted(int64_t n, size_t available, const char* option, const char* what) {
  LRA_CHECK(n >= 0, "{} must not be negative (got {}); use 0 for all", option, n);
  LRA_CHECK(static_cast<size_t>(n) <= available, "{} = {} but {} has only {} reviews", option, n, what, available);
  return n > 0 ? static_cast<size_t>(n) : available;
}

// IMDB's two labelled splits, whole, through the parsed-data cache (parsed once, then reused).
cache::Loaded open_imdb(const DataOptions& opt, const ImdbSource& src) {
  const std::string abs = fs::absolute(src.path).lexically_normal().string();
  const bool folder = src.kind == ImdbSource::Folder;
  const std::string source_id = folder ? folder_listing_digest(abs) : file_checksum(abs);
  const std::string key = fmt::format("{}|{}|{}|{}", folder ? "folder" : "archive", abs, source_id, kParse);
  cache::Digest name;
  name.add_field(abs);
  const std::string file = cache::cache_file(opt, "text", fmt::format("imdb-{:016x}", name.value()));
  if (!opt.quiet) fmt::print(stderr, "text: IMDB from {}\n", abs);
  return cache::load_or_build(file, key, "text (IMDB)", opt.quiet, [&] {
    const ImdbReviews r = folder ? read_imdb_folder(abs) : read_imdb_archive(abs);
    cache::Entry e;
    e.meta["files"] = nlohmann::json::array({{abs, folder ? r.digest : source_id}});
    e.meta["review_digest"] = r.digest;
    e.splits.emplace_back("train", r.train);
    e.splits.emplace_back("test", r.test);
    return e;
  });
}

// How many reviews each split takes from IMDB's train and test (see the top of this file).
struct ImdbCounts {
  size_t train, val, test;
  size_t kept;  // val_split "train": the first `kept` of the drawn order train, the rest is held out
};

ImdbCounts imdb_counts(const DataOptions& opt, const std::string& val_split, size_t train_all, size_t test_all) {
  ImdbCounts c{};
  c.test = wanted(opt.n_test, test_all, "n_test", "IMDB test");
  if (val_split == "test") {
    c.val = wanted(opt.n_val, test_all, "n_val", "IMDB test");
    c.train = wanted(opt.n_train, train_all, "n_train", "IMDB train");
  } else {
    c.kept = train_all - train_all / 10;
    c.val = wanted(opt.n_val, train_all - c.kept, "n_val", "the held-out 10% of IMDB train");
    c.train = wanted(opt.n_train, c.kept, "n_train", "the 90% of IMDB train kept for training");
  }
  return c;
}

TaskData load_imdb(const DataOptions& opt, const ImdbSource& src) {
  const int max_length = resolved_max_length(opt);
  const std::string val_split = val_split_of(opt);
  cache::Loaded loaded = open_imdb(opt, src);
  Split& train_all = loaded.entry.split("train");
  Split& test_all = loaded.entry.split("test");

  // A random subset of each split (order drawn from data_seed); a whole split is moved as it is.
  const auto train_order = shuffled(train_all.size(), opt.data_seed, kShuffleStream);
  const auto test_order = shuffled(test_all.size(), opt.data_seed, kShuffleStream + 1);
  const ImdbCounts n = imdb_counts(opt, val_split, train_all.size(), test_all.size());
  TaskData data;
  if (val_split == "test") {
    data.val = pick(test_all, test_order, 0, n.val, max_length);
    data.train = n.train == train_all.size() ? whole(std::move(train_all), max_length)
                                             : pick(train_all, train_order, 0, n.train, max_length);
  } else {
    // The last 10% of the drawn order is held out for validation, the rest is for training.
    data.val = pick(train_all, train_order, n.kept, n.val, max_length);
    data.train = pick(train_all, train_order, 0, n.train, max_length);
  }
  data.test = n.test == test_all.size() ? whole(std::move(test_all), max_length)
                                        : pick(test_all, test_order, 0, n.test, max_length);

  data.info.name = "imdb_reviews (byte level)";
  data.info.source = "files";
  data.info.path = fs::absolute(src.path).lexically_normal().string();
  for (const auto& f : loaded.entry.meta.at("files")) data.info.files.emplace_back(f[0].get<std::string>(), f[1].get<std::string>());
  data.info.generator = {{"encoding", "TFDS bytes.strip(), id = byte + 1 (ByteTextEncoder), pad 0"},
                         {"val_split", val_split},
                         {"max_length", max_length},
                         {"order_seed", opt.data_seed},
                         {"n_train", opt.n_train},
                         {"n_val", opt.n_val},
                         {"n_test", opt.n_test},
                         {"cache", loaded.to_json()}};
  return data;
}

// The stand-in's split sizes: IMDB's by default (25,000 each; 22,500 / 2,500 with val_split "train").
struct StandInSizes {
  int64_t train, val, test;
};

StandInSizes standin_sizes(const DataOptions& opt, bool held_out) {
  check_split_sizes(opt);
  return {opt.n_train > 0 ? opt.n_train : (held_out ? kImdbSplitSize * 9 / 10 : kImdbSplitSize),
          opt.n_val > 0 ? opt.n_val : (held_out ? kImdbSplitSize / 10 : kImdbSplitSize),
          opt.n_test > 0 ? opt.n_test : kImdbSplitSize};
}

nlohmann::json standin_json(const std::string& reason, const std::string& val_split, int max_length,
                            const StandInSizes& n) {
  const StandInConfig cfg;
  return {{"reason", reason},
          {"documents", "lowercase words and sentences of max_length/2..max_length bytes"},
          {"label", "1 when pos marker words outnumber neg marker words over the whole document"},
          {"marker_rate", cfg.marker_rate},
          {"bias", {cfg.min_bias, cfg.max_bias}},
          {"val_split", val_split},
          {"max_length", max_length},
          {"n_train", n.train},
          {"n_val", n.val},
          {"n_test", n.test}};
}

TaskData load_standin(const DataOptions& opt, const std::string& why) {
  const int max_length = resolved_max_length(opt);
  const std::string val_split = val_split_of(opt);
  fmt::print(stderr,
             "text: {}: using the generated stand-in (byte-level documents labelled by which of two marker "
             "vocabularies is more frequent; NOT IMDB, so the accuracy is not comparable with LRA's Text). "
             "Point --data-dir at aclImdb/ or aclImdb_v1.tar.gz for the real task.\n",
             why);
  const bool held_out = val_split == "train";
  const StandInSizes n = standin_sizes(opt, held_out);
  if (!opt.quiet) fmt::print(stderr, "text: generating {}/{}/{} stand-in documents ... ", n.train, n.val, n.test);
  const Timer timer;
  TaskData data;
  data.train = standin_split(opt.data_seed, kStandInTrain, n.train, max_length);
  if (held_out) {
    data.val = standin_split(opt.data_seed, kStandInHeldOut, n.val, max_length);
    data.test = standin_split(opt.data_seed, kStandInTest, n.test, max_length);
  } else {
    // As with IMDB, validation documents are test documents: the first n_val of the test stream.
    data.test = standin_split(opt.data_seed, kStandInTest, std::max(n.val, n.test), max_length);
    std::vector<size_t> order(data.test.size());
    std::iota(order.begin(), order.end(), size_t{0});
    data.val = pick(data.test, order, 0, static_cast<size_t>(n.val), max_length);
    if (n.val > n.test) data.test = pick(data.test, order, 0, static_cast<size_t>(n.test), max_length);
  }
  if (!opt.quiet) fmt::print(stderr, "done in {:.1f} s\n", timer.seconds());
  data.info.name = "text stand-in (generated, not IMDB)";
  data.info.source = "stand-in";
  data.info.path = "";
  data.info.generated = true;
  data.info.generator_seed = opt.data_seed;
  data.info.generator = standin_json(why, val_split, max_length, n);
  return data;
}

// Where load() takes the data from, and why: the one decision that load() and data_status() share.
struct Choice {
  ImdbSource src;
  std::string reason;
};

Choice choose_source(const DataOptions& opt) {
  check_data_dir_exists(opt);
  Choice c{find_imdb(opt.data_dir), ""};
  if (c.src.kind == ImdbSource::Archive)
    c.reason = fmt::format("found {} in {}", fs::path(c.src.path).filename().string(),
                           fs::path(c.src.path).parent_path().string());
  else if (c.src.kind == ImdbSource::Folder)
    c.reason = fmt::format("found the aclImdb folder {}", c.src.path);
  else if (opt.data_dir.empty())
    c.reason = "no --data-dir was given";
  else
    c.reason = fmt::format("no IMDB under '{}' (looked for {})", opt.data_dir, fmt::join(c.src.tried, ", "));
  return c;
}

class TextTask final : public Task {
 public:
  std::string name() const override { return "text"; }
  std::string summary() const override {
    return "Text: IMDB sentiment (neg/pos) from the reviews' bytes, max_length 4000 as in the paper (LRA's "
           "released config used 1000: --set max_length=1000); a generated stand-in when no IMDB is found";
  }
  TaskShape shape(const nlohmann::json&) const override { return {kVocabSize, kNumClasses, false, ""}; }
  DocumentView view(const uint16_t* ids, size_t n) const override { return byte_text_view(ids, n); }
  // LRA's base_tc_config.py with the paper's length (4000 instead of the config's 1000).
  nlohmann::json defaults() const override {
    return lra_text_task_config({{"max_length", kDefaultMaxLength},
                                 {"emb_dim", 256},
                                 {"num_heads", 4},
                                 {"num_layers", 4},
                                 {"qkv_dim", 256},
                                 {"mlp_dim", 1024},
                                 {"warmup", 8000},
                                 {"num_train_steps", 20000},
                                 {"eval_frequency", 100}});
  }
  std::map<std::string, nlohmann::json> presets() const override {
    return {{"paper", nlohmann::json::object()}, {"cpu", cpu_preset()}};
  }
  std::vector<HyperParam> params() const override {
    return {{"val_split", "test",
             "validation data: \"test\" = IMDB's test split, as LRA does (it has no validation split); \"train\" = "
             "a held-out 10% of train (deterministic by data_seed), training on the other 90%"}};
  }
  TaskData load(const DataOptions& opt) const override { return text::load(opt); }
  DataStatus data_status(const DataOptions& opt) const override { return text::data_status(opt); }
};

}  // namespace

TaskData load(const DataOptions& opt) {
  const Choice c = choose_source(opt);
  return c.src.kind == ImdbSource::None ? load_standin(opt, c.reason) : load_imdb(opt, c.src);
}

DataStatus data_status(const DataOptions& opt) {
  const Choice c = choose_source(opt);
  const std::string val_split = val_split_of(opt);
  DataStatus st;
  st.reason = c.reason;
  if (c.src.kind == ImdbSource::None) {
    const StandInSizes n = standin_sizes(opt, val_split == "train");
    st.source = "stand-in";
    st.dataset = "text stand-in (generated, not IMDB)";
    st.n_train = n.train;
    st.n_val = n.val;
    st.n_test = n.test;
    st.generated = true;
    st.seed = opt.data_seed;
    st.details = standin_json(c.reason, val_split, resolved_max_length(opt), n);
    st.details["cache"] = "the stand-in is drawn in memory at every run (seconds)";
    return st;
  }
  DataOptions quiet = opt;
  quiet.quiet = true;
  const cache::Loaded loaded = open_imdb(quiet, c.src);
  const ImdbCounts n =
      imdb_counts(opt, val_split, loaded.entry.split("train").size(), loaded.entry.split("test").size());
  st.source = "files";
  st.dataset = c.src.kind == ImdbSource::Archive ? "IMDB (aclImdb_v1.tar.gz)" : "IMDB (aclImdb folder)";
  st.path = fs::absolute(c.src.path).lexically_normal().string();
  st.n_train = static_cast<int64_t>(n.train);
  st.n_val = static_cast<int64_t>(n.val);
  st.n_test = static_cast<int64_t>(n.test);
  for (const auto& f : loaded.entry.meta.at("files"))
    st.files.emplace_back(f[0].get<std::string>(), f[1].get<std::string>());
  st.details = {{"val_split", val_split}, {"cache", loaded.to_json()}};
  return st;
}

}  // namespace lra::text

namespace lra {

std::unique_ptr<Task> make_text_task() { return std::make_unique<text::TextTask>(); }

}  // namespace lra
