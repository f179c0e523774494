// The Pathfinder and Path-X tasks: LRA's configs (image/configs/pathfinder32 and pathfinder128), the
// presets, the task options, and loading from the released folders or the generator's cache.
//
// Config facts (docs/lra-facts.md 4.6, 4.7): Pathfinder = base_pathfinder32_config with the model
// size of its `transformer` config (emb 32, 4 heads, 4 layers, qkv 16, mlp 32, dropout 0.2), batch
// 512, lr 1e-3 with linear warmup (1 epoch = 312 steps) and cosine decay over 200 epochs (62,400
// steps), no weight decay, MEAN pooling, sinusoidal positions. Path-X = base_pathfinder128_config,
// which its transformer config leaves as it is: emb 32, 2 heads, 1 layer, qkv 16, mlp 32, dropout
// 0.1, batch 64, warmup 2,500, 500,000 steps, gradient clipping at 1.0, learned positions.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/pathfinder/pathfinder.h"

namespace lra::pathfinder {

namespace fs = std::filesystem;

namespace {

SplitSizes requested_sizes(const DataOptions& opt) {
  check_split_sizes(opt);
  SplitSizes s;
  if (opt.n_train > 0) s.train = opt.n_train;
  if (opt.n_val > 0) s.val = opt.n_val;
  if (opt.n_test > 0) s.test = opt.n_test;
  return s;
}

// Moves an image set into a Split of pixel tokens.
Split to_split(ImageSet& set, bool zero_is_padding) {
  Split s;
  s.zero_is_padding = zero_is_padding;
  const size_t area = static_cast<size_t>(set.resolution) * static_cast<size_t>(set.resolution);
  s.tokens.assign(set.pixels.begin(), set.pixels.end());
  s.offsets.resize(set.size() + 1);
  for (size_t i = 0; i <= set.size(); ++i) s.offsets[i] = i * area;
  s.labels = std::move(set.labels);
  s.origins = std::move(set.origins);
  set = ImageSet();
  return s;
}

nlohmann::json generator_json(const Params& p, const std::string& difficulty) {
  return {{"resolution", p.resolution},
          {"difficulty", difficulty},
          {"contour_length", p.contour_length},
          {"padding", p.padding},
          {"antialias", p.antialias},
          {"paddle_length", p.paddle_length},
          {"paddle_thickness", p.paddle_thickness},
          {"paddle_margins", p.margins},
          {"marker_radius", p.marker_radius},
          {"seed_distance", p.seed_distance},
          {"continuity", p.continuity},
          {"snake_contrast", p.snake_contrast},
          {"paddle_contrast", p.paddle_contrast},
          {"distractor_length", p.distractor_length},
          {"distractor_snakes", p.distractor_snakes}};
}

TaskData finish(Dataset& d, bool zero_is_padding) {
  TaskData data;
  data.train = to_split(d.train, zero_is_padding);
  data.val = to_split(d.val, zero_is_padding);
  data.test = to_split(d.test, zero_is_padding);
  return data;
}

TaskData load_files(const DataOptions& opt, const std::string& dir, const Params& p, bool zero_is_padding) {
  const bool subsample = opt.n_train > 0 || opt.n_val > 0 || opt.n_test > 0;
  if (!opt.quiet)
    fmt::print(
        stderr, "reading Pathfinder ({} px, {}) from {}{}\n", p.resolution, difficulty_folder(p.contour_length), dir,
        subsample
            ? fmt::format(" (the first {}/{}/{} train/val/test images; 0 = all)", opt.n_train, opt.n_val, opt.n_test)
            : "");
  const Timer timer;
  std::vector<std::string> metadata;
  Dataset d = read_released(dir, p, opt.n_train, opt.n_val, opt.n_test, metadata);
  if (!opt.quiet)
    fmt::print(stderr, "read {}/{}/{} images in {:.1f} s\n", d.train.size(), d.val.size(), d.test.size(),
               timer.seconds());
  TaskData data = finish(d, zero_is_padding);
  data.info.source = "files";
  data.info.path = dir;
  for (const std::string& f : metadata) data.info.files.emplace_back(f, file_checksum(f));
  if (subsample)
    data.info.generator = {{"subsample", "the first n images of each 80/10/10 split (0 = all)"},
                           {"n_train", opt.n_train},
                           {"n_val", opt.n_val},
                           {"n_test", opt.n_test}};
  return data;
}

nlohmann::json generated_json(const Params& p, const std::string& difficulty, const SplitSizes& sizes) {
  nlohmann::json j = generator_json(p, difficulty);
  j["n_train"] = sizes.train;
  j["n_val"] = sizes.val;
  j["n_test"] = sizes.test;
  return j;
}

TaskData load_generated(const DataOptions& opt, const std::string& path, const Params& p,
                        const std::string& difficulty, bool zero_is_padding) {
  const SplitSizes sizes = requested_sizes(opt);
  Dataset d;
  std::string reason, checksum;
  if (read_cache(path, opt.data_seed, p, sizes, d, reason, checksum)) {
    if (!opt.quiet)
      fmt::print(stderr, "Pathfinder ({} px, {}, seed {}): using the cached images in {}\n", p.resolution, difficulty,
                 opt.data_seed, path);
  } else {
    if (fs::exists(path))
      fmt::print(stderr, "Pathfinder: the cached images in {} cannot be used: {}; generating them again\n", path,
                 reason);
    const int64_t total = sizes.train + sizes.val + sizes.test;
    if (!opt.quiet)
      fmt::print(stderr, "generating Pathfinder ({} px, {}, seed {}): {} images ...\n", p.resolution, difficulty,
                 opt.data_seed, total);
    const Timer timer;
    d = generate(opt.data_seed, p, sizes, !opt.quiet);
    const double seconds = timer.seconds();
    try {
      checksum = write_cache(path, opt.data_seed, d);
    } catch (const Error& e) {
      // The data is in memory; an unwritable cache costs only the next run's time.
      fmt::print(stderr, "warning: could not cache the generated Pathfinder images: {}\n", e.what());
    }
    if (!opt.quiet)
      fmt::print(stderr, "generated {} images in {:.1f} s ({:.0f} images/s){}\n", total, seconds,
                 total / std::max(seconds, 1e-9), checksum.empty() ? "" : ", cached in " + path);
  }
  TaskData data = finish(d, zero_is_padding);
  // Generated images are named by their place in the generator's output (and in its cache file).
  const char* names[] = {"train", "val", "test"};
  Split* splits[] = {&data.train, &data.val, &data.test};
  for (size_t k = 0; k < 3; ++k)
    for (size_t i = 0; i < splits[k]->size(); ++i)
      splits[k]->origins.add(fmt::format("{} ({} split)", path, names[k]), "example", static_cast<int64_t>(i));
  data.info.source = "generated";
  data.info.path = path;
  data.info.generated = true;
  data.info.generator_seed = opt.data_seed;
  data.info.generator = generated_json(p, difficulty, sizes);
  if (!checksum.empty()) data.info.files.emplace_back(path, checksum);
  return data;
}

// The task options resolved: which images to read or draw.
struct Setup {
  Params p;
  std::string difficulty;
  bool zero_is_padding = true;
};

Setup setup_of(const DataOptions& opt, int default_resolution) {
  const int resolution = opt.task_params.value("resolution", default_resolution);
  Setup s;
  s.difficulty = opt.task_params.value("difficulty", std::string("hard"));
  s.zero_is_padding = opt.task_params.value("zero_is_padding", true);
  s.p = params_for(resolution, contour_length_of(s.difficulty));
  const int tokens = resolution * resolution;
  LRA_CHECK(opt.max_length >= 0, "max_length must not be negative (got {})", opt.max_length);
  LRA_CHECK(opt.max_length == 0 || opt.max_length >= tokens,
            "pathfinder: resolution {} gives {} tokens per image but max_length is {}; add --set max_length={} "
            "(an image cut short would lose its lower rows, and with them often a marker)",
            resolution, tokens, opt.max_length, tokens);
  return s;
}

// Where load() takes the images from, and why: the one decision that load() and data_status() share.
struct Source {
  bool files = false;
  std::string path;  // the released difficulty folder, or the generator's cache file
  std::string reason;
};

Source choose_source(const DataOptions& opt, const Params& p) {
  check_data_dir_exists(opt);
  const std::string what = fmt::format("pathfinder{}/{}", p.resolution, difficulty_folder(p.contour_length));
  if (opt.data_dir.empty()) return {false, cache_path(opt, p, requested_sizes(opt)), "no --data-dir was given"};
  std::vector<std::string> tried;
  const std::string dir = locate_released(opt.data_dir, p.resolution, p.contour_length, tried);
  if (!dir.empty()) return {true, dir, fmt::format("found the released {} folder {}", what, dir)};
  return {false, cache_path(opt, p, requested_sizes(opt)),
          fmt::format("no {} under '{}' (looked for a metadata/ folder in {})", what, opt.data_dir,
                      fmt::join(tried, ", "))};
}

const char* const kDifficultyHelp =
    "\"easy\" (contour length 6, LRA's curv_baseline), \"medium\" (9, curv_contour_length_9) or \"hard\" (14, "
    "curv_contour_length_14, the LRA task)";

class PathfinderTask final : public Task {
 public:
  PathfinderTask(std::string name, int resolution) : name_(std::move(name)), resolution_(resolution) {}
  std::string name() const override { return name_; }
  std::string summary() const override {
    return resolution_ == 32
               ? "Pathfinder: are the two dots joined by one dashed path? 32x32 pixels = 1024 tokens, 2 classes "
                 "(generated with LRA's settings, or the released pathfinder32 files)"
               : "Path-X: Pathfinder at 128x128 pixels = 16384 tokens, 2 classes (LRA's pathfinder128 hard)";
  }
  TaskShape shape(const nlohmann::json&) const override { return {kVocabSize, kNumClasses, false, ""}; }
  DocumentView view(const uint16_t* ids, size_t n) const override { return pixel_view(ids, n, resolution_); }
  nlohmann::json defaults() const override {
    if (resolution_ == 32)
      return {{"max_length", 1024},
              {"emb_dim", 32},
              {"num_heads", 4},
              {"num_layers", 4},
              {"qkv_dim", 16},
              {"mlp_dim", 32},
              {"batch_size", 512},
              {"learning_rate", 0.001},
              {"factors", "constant * linear_warmup * cosine_decay"},
              {"warmup", 312},
              {"steps_per_cycle", 62400},
              {"num_train_steps", 62400},
              {"weight_decay", 0.0},
              {"beta1", 0.9},
              {"beta2", 0.98},
              {"adam_eps", 1e-9},
              {"dropout_rate", 0.2},
              {"attention_dropout_rate", 0.1},
              {"classifier_pool", "MEAN"},
              {"learn_pos_emb", false},
              {"eval_frequency", 312},
              {"grad_clip_norm", 0.0}};
    return {{"max_length", 16384},
            {"emb_dim", 32},
            {"num_heads", 2},
            {"num_layers", 1},
            {"qkv_dim", 16},
            {"mlp_dim", 32},
            {"batch_size", 64},
            {"learning_rate", 0.001},
            {"factors", "constant * linear_warmup * cosine_decay"},
            {"warmup", 2500},
            {"steps_per_cycle", 500000},
            {"num_train_steps", 500000},
            {"weight_decay", 0.0},
            {"beta1", 0.9},
            {"beta2", 0.98},
            {"adam_eps", 1e-9},
            {"dropout_rate", 0.1},
            {"attention_dropout_rate", 0.1},
            {"classifier_pool", "MEAN"},
            {"learn_pos_emb", true},
            {"eval_frequency", 2500},
            {"grad_clip_norm", 1.0}};
  }
  std::map<std::string, nlohmann::json> presets() const override {
    return {{"paper", nlohmann::json::object()}, {"cpu", resolution_ == 32 ? cpu_pathfinder() : cpu_pathx()}};
  }
  std::vector<HyperParam> params() const override {
    return {{"resolution", resolution_,
             "image side in pixels: 32, 64, 128 or 256 (LRA's pathfinder32..256); tokens = resolution^2, so "
             "set max_length to match"},
            {"difficulty", "hard", kDifficultyHelp},
            {"zero_is_padding", true,
             "true = pixel value 0 is masked as padding, as LRA's model does (inputs > 0); false = every pixel is a "
             "real token"}};
  }
  TaskData load(const DataOptions& opt) const override {
    TaskData data = pathfinder::load(opt, resolution_);
    data.info.name = name_;
    return data;
  }
  DataStatus data_status(const DataOptions& opt) const override { return pathfinder::data_status(opt, resolution_); }

 private:
  // The `cpu` presets: minutes on 2 cores. One small layer, a short cosine cycle and a generated set
  // small enough to draw in seconds (a prefix of the full splits: the same images for any n). Path-X
  // tests on 2,000 images: on 200 a model at chance scored 60.5% (the binomial spread is 3.5 points),
  // on 2,000 the same model scored 51.8%.
  static nlohmann::json cpu_pathfinder() {
    return {{"emb_dim", 32},           {"num_heads", 2},        {"num_layers", 1},         {"qkv_dim", 32},
            {"mlp_dim", 64},           {"batch_size", 64},      {"num_train_steps", 1500}, {"warmup", 100},
            {"steps_per_cycle", 1500}, {"eval_frequency", 250}, {"learning_rate", 0.002},  {"n_train", 20000},
            {"n_val", 2000},           {"n_test", 2000}};
  }
  static nlohmann::json cpu_pathx() {
    return {{"emb_dim", 32},          {"num_heads", 2},        {"num_layers", 1},        {"qkv_dim", 16},
            {"mlp_dim", 32},          {"batch_size", 8},       {"num_train_steps", 200}, {"warmup", 20},
            {"steps_per_cycle", 200}, {"eval_frequency", 100}, {"n_train", 2000},        {"n_val", 500},
            {"n_test", 2000}};
  }

  std::string name_;
  int resolution_;
};

}  // namespace

std::string cache_path(const DataOptions& opt, const Params& p, const SplitSizes& sizes) {
  const std::string root = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  const std::string difficulty = p.contour_length == 6 ? "easy" : p.contour_length == 9 ? "medium" : "hard";
  return (fs::path(root) / "pathfinder" /
          fmt::format("pf{}-{}-seed{}-train{}-val{}-test{}.bin", p.resolution, difficulty, opt.data_seed, sizes.train,
                      sizes.val, sizes.test))
      .string();
}

TaskData load(const DataOptions& opt, int default_resolution) {
  const Setup s = setup_of(opt, default_resolution);
  const Source src = choose_source(opt, s.p);
  if (!src.files && !opt.data_dir.empty())
    fmt::print(stderr,
               "pathfinder: {}: generating the images instead (seed {}). Point --data-dir at the extracted "
               "lra_release folder or at the difficulty folder itself for the released images.\n",
               src.reason, opt.data_seed);
  TaskData data = src.files ? load_files(opt, src.path, s.p, s.zero_is_padding)
                            : load_generated(opt, src.path, s.p, s.difficulty, s.zero_is_padding);
  if (!src.files) data.info.generator["reason"] = src.reason;
  data.info.name = "pathfinder";
  return data;
}

DataStatus data_status(const DataOptions& opt, int default_resolution) {
  const Setup s = setup_of(opt, default_resolution);
  const Source src = choose_source(opt, s.p);
  DataStatus st;
  st.reason = src.reason;
  st.path = src.path;
  const std::string what = fmt::format("pathfinder{} {}", s.p.resolution, difficulty_folder(s.p.contour_length));
  if (src.files) {
    const ReleasedCounts c = count_released(src.path, opt.n_train, opt.n_val, opt.n_test);
    st.source = "files";
    st.dataset = what + " (LRA release)";
    st.n_train = c.train;
    st.n_val = c.val;
    st.n_test = c.test;
    for (const std::string& f : c.metadata_files) st.files.emplace_back(f, file_checksum(f));
    st.details = {{"resolution", s.p.resolution}, {"difficulty", s.difficulty}, {"images", c.total}};
    return st;
  }
  const SplitSizes sizes = requested_sizes(opt);
  st.source = "generated";
  st.dataset = what + " (snakes2 generator)";
  st.n_train = sizes.train;
  st.n_val = sizes.val;
  st.n_test = sizes.test;
  st.generated = true;
  st.seed = opt.data_seed;
  std::error_code ec;
  st.cached = fs::is_regular_file(src.path, ec);
  if (st.cached) st.files.emplace_back(src.path, file_checksum(src.path));
  st.details = generated_json(s.p, s.difficulty, sizes);
  return st;
}

}  // namespace lra::pathfinder

namespace lra {

std::unique_ptr<Task> make_pathfinder_task() { return std::make_unique<pathfinder::PathfinderTask>("pathfinder", 32); }
std::unique_ptr<Task> make_pathx_task() { return std::make_unique<pathfinder::PathfinderTask>("pathx", 128); }

}  // namespace lra
