// Pathfinder and Path-X tests: LRA's settings per resolution and difficulty, the generator
// (determinism per seed and across thread counts, label balance, image statistics, and that the
// markers of positive images are joined through one target snake while those of negative images
// are not, checked with a flood fill in this file), the binary cache (reuse, damage, other keys),
// the released layout (writer -> reader round trip, empty and broken files, malformed metadata),
// and the two registered tasks.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <deque>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "core/files.h"
#include "tasks/pathfinder/pathfinder.h"
#include "tasks/task.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace lra;
using namespace lra::pathfinder;
using Catch::Contains;
using lra::test::TempDir;

namespace {

bool same(const ImageSet& a, const ImageSet& b) {
  return a.resolution == b.resolution && a.pixels == b.pixels && a.labels == b.labels;
}

bool same(const Dataset& a, const Dataset& b) {
  return same(a.train, b.train) && same(a.val, b.val) && same(a.test, b.test);
}

// Whether (y1, x1) is reached from (y0, x0) stepping between pixels of `img` that are >= threshold
// and at most `reach` apart in both coordinates (the paddles of a snake are dashes: consecutive ones
// are about 2 * margin apart).
bool flood_reaches(const std::vector<uint8_t>& img, int n, int y0, int x0, int y1, int x1, int threshold, int reach) {
  std::vector<char> seen(img.size(), 0);
  std::deque<int> queue{y0 * n + x0};
  seen[static_cast<size_t>(y0 * n + x0)] = 1;
  while (!queue.empty()) {
    const int c = queue.front();
    queue.pop_front();
    const int y = c / n, x = c % n;
    if (y == y1 && x == x1) return true;
    for (int dy = -reach; dy <= reach; ++dy)
      for (int dx = -reach; dx <= reach; ++dx) {
        const int yy = y + dy, xx = x + dx;
        if (yy < 0 || yy >= n || xx < 0 || xx >= n) continue;
        const size_t k = static_cast<size_t>(yy * n + xx);
        if (seen[k] || img[k] < threshold) continue;
        seen[k] = 1;
        queue.push_back(yy * n + xx);
      }
  }
  return false;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

DataOptions options(const std::string& cache_dir, int64_t n_train, int64_t n_val, int64_t n_test) {
  DataOptions opt;
  opt.cache_dir = cache_dir;
  opt.n_train = n_train;
  opt.n_val = n_val;
  opt.n_test = n_test;
  opt.quiet = true;
  opt.task_params = {{"resolution", 32}, {"difficulty", "hard"}, {"zero_is_padding", true}};
  return opt;
}

// A small released folder (8/1/1 images) written by the writer; returns its difficulty folder.
std::string small_release(const std::string& root, Dataset* out = nullptr) {
  Dataset d = generate(5, params_for(32, 14), {8, 1, 1});
  if (out != nullptr) *out = d;
  return write_released_layout(d, root);
}

}  // namespace

TEST_CASE("pathfinder: LRA's settings per resolution and difficulty", "[pathfinder]") {
  CHECK(contour_length_of("easy") == 6);
  CHECK(contour_length_of("medium") == 9);
  CHECK(contour_length_of("hard") == 14);
  CHECK_THROWS_WITH(contour_length_of("intermediate"), Contains("\"easy\"") && Contains("\"hard\""));
  CHECK(difficulty_folder(6) == "curv_baseline");
  CHECK(difficulty_folder(9) == "curv_contour_length_9");
  CHECK(difficulty_folder(14) == "curv_contour_length_14");

  const Params p32 = params_for(32, 14);
  CHECK(p32.paddle_length == 2);
  CHECK(p32.paddle_thickness == 0.5);
  CHECK(p32.margins == std::vector<int>{1});
  CHECK(p32.seed_distance == 7);
  CHECK(p32.continuity == 1.0);
  CHECK(p32.snake_contrast == 2.0);
  CHECK(p32.paddle_contrast == 0.75);
  CHECK(p32.distractor_length == 4);
  CHECK(p32.distractor_snakes == 5);  // 20 // 4
  CHECK(params_for(32, 6).distractor_snakes == 10);
  CHECK(params_for(32, 9).distractor_snakes == 6);

  const Params px = params_for(128, 14);
  CHECK(px.margins == std::vector<int>{2, 3});
  CHECK(px.seed_distance == 20);
  CHECK(px.marker_radius == 3.0);
  CHECK(px.distractor_length == 4);
  CHECK(px.distractor_snakes == 8);  // while isnake < 35 / (14 / 3.0) = 7.5
  CHECK(px.distractor_length_field == "4.666666666666667");
  CHECK(params_for(128, 6).distractor_snakes == 18);
  CHECK(params_for(128, 6).distractor_length_field == "2.0");
  CHECK(params_for(64, 14).continuity == 1.8);
  CHECK(params_for(256, 14).padding == 22);

  CHECK_THROWS_WITH(params_for(48, 14), Contains("32, 64, 128 or 256"));
  CHECK_THROWS_WITH(params_for(32, 7), Contains("6, 9 or 14"));
}

TEST_CASE("pathfinder: generation is deterministic per seed, prefix-stable and thread-independent", "[pathfinder]") {
  const Params p = params_for(32, 14);
  const Dataset a = generate(3, p, {40, 10, 10});
  const Dataset b = generate(3, p, {40, 10, 10});
  CHECK(same(a, b));
  CHECK(a.train.size() == 40);
  CHECK(a.val.size() == 10);
  CHECK(a.test.size() == 10);
  CHECK(a.train.pixels.size() == 40u * 1024u);

  const Dataset other = generate(4, p, {40, 10, 10});
  CHECK_FALSE(other.train.pixels == a.train.pixels);

  // A smaller request is a prefix of a larger one, split by split.
  const Dataset small = generate(3, p, {20, 5, 0});
  CHECK(std::equal(small.train.pixels.begin(), small.train.pixels.end(), a.train.pixels.begin()));
  CHECK(std::equal(small.val.labels.begin(), small.val.labels.end(), a.val.labels.begin()));

  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Dataset serial = generate(3, p, {40, 10, 10});
  omp_set_num_threads(2);
  const Dataset two = generate(3, p, {40, 10, 10});
  omp_set_num_threads(threads);
  CHECK(same(serial, a));
  CHECK(same(two, a));

  // Other settings draw other images from the same seed.
  const Dataset easy = generate(3, params_for(32, 6), {40, 0, 0});
  CHECK_FALSE(easy.train.pixels == a.train.pixels);
}

TEST_CASE("pathfinder: positive markers are joined through one snake, negative ones are not", "[pathfinder]") {
  // Each target snake is also drawn alone (Trace). From the first marker, a flood fill over that
  // snake's pixels (>= 40 of 255, steps up to 2 * margin + 2 pixels to cross the gaps between its
  // dashes) must reach the second marker exactly when the label is 1: the second marker sits at the
  // far end of the same snake, or at the far end of the other one, which never touches the first.
  struct Case {
    int resolution, contour_length, images;
  };
  for (const Case c : {Case{32, 14, 400}, Case{32, 6, 200}, Case{128, 6, 30}}) {
    INFO("resolution " << c.resolution << ", contour length " << c.contour_length);
    const Params p = params_for(c.resolution, c.contour_length);
    const int n = c.resolution;
    std::vector<uint8_t> img(static_cast<size_t>(n) * static_cast<size_t>(n));
    int positives = 0;
    for (int i = 0; i < c.images; ++i) {
      INFO("image " << i);
      Rng rng(11, static_cast<uint64_t>(i));
      Trace t;
      int margin = 0;
      const int label = draw_image(p, rng, img.data(), margin, &t);
      REQUIRE((label == 0 || label == 1));
      positives += label;
      REQUIRE(std::find(p.margins.begin(), p.margins.end(), margin) != p.margins.end());
      // The image is rescaled to the full 0..255 range; both markers are bright.
      CHECK(*std::min_element(img.begin(), img.end()) == 0);
      CHECK(*std::max_element(img.begin(), img.end()) == 255);
      CHECK(img[static_cast<size_t>(t.markers[0] * n + t.markers[1])] >= 200);
      CHECK(img[static_cast<size_t>(t.markers[2] * n + t.markers[3])] >= 200);
      const std::vector<uint8_t>& own = t.snakes[t.marker_snake];
      const std::vector<uint8_t>& other = t.snakes[1 - t.marker_snake];
      CHECK(flood_reaches(own, n, t.markers[0], t.markers[1], t.markers[2], t.markers[3], 40, 2 * margin + 2) ==
            (label == 1));
      // The second marker lies on the snake that holds it and on no other.
      const size_t m2 = static_cast<size_t>(t.markers[2] * n + t.markers[3]);
      CHECK((label == 1 ? own[m2] : other[m2]) >= 40);
      CHECK((label == 1 ? other[m2] : own[m2]) < 40);
    }
    // Bernoulli(0.5) labels: 4 standard deviations.
    CHECK(std::abs(positives - c.images / 2) <= 2 * static_cast<int>(std::sqrt(c.images)));
  }
}

TEST_CASE("pathfinder: image statistics per difficulty", "[pathfinder]") {
  // Measured on 400 images per difficulty (seeds 0 and 1 agree to 1%): mean intensity 17.0 / 18.4 /
  // 22.8 and 13% / 14.5% / 18.4% of pixels >= 32 for easy / medium / hard; longer snakes and their
  // longer distractors put more ink on the canvas.
  double previous_mean = 0.0;
  for (const int contour : {6, 9, 14}) {
    INFO("contour length " << contour);
    const Dataset d = generate(7, params_for(32, contour), {400, 0, 0});
    double sum = 0.0, lit = 0.0;
    for (uint8_t v : d.train.pixels) {
      sum += v;
      lit += v >= 32;
    }
    const double mean = sum / static_cast<double>(d.train.pixels.size());
    const double fraction = lit / static_cast<double>(d.train.pixels.size());
    CHECK(mean > 12.0);
    CHECK(mean < 30.0);
    CHECK(fraction > 0.08);
    CHECK(fraction < 0.28);
    CHECK(mean > previous_mean);
    previous_mean = mean;
    const int positives = static_cast<int>(std::count(d.train.labels.begin(), d.train.labels.end(), 1));
    CHECK(std::abs(positives - 200) <= 40);
  }
}

TEST_CASE("pathfinder: generated data is cached, reused and regenerated when damaged", "[pathfinder]") {
  TempDir tmp("pathfinder-cache");
  const DataOptions opt = options(tmp.path, 30, 6, 4);
  const Params p = params_for(32, 14);
  const std::string path = cache_path(opt, p, {30, 6, 4});
  CHECK(path == tmp / "pathfinder/pf32-hard-seed0-train30-val6-test4.bin");

  const TaskData first = load(opt, 32);
  REQUIRE(fs::exists(path));
  CHECK(first.train.size() == 30);
  CHECK(first.val.size() == 6);
  CHECK(first.test.size() == 4);
  CHECK(first.train.zero_is_padding);
  for (size_t i = 0; i < first.train.size(); ++i) CHECK(first.train.length(i) == 1024);
  CHECK(first.info.source == "generated");
  CHECK(first.info.generated);
  CHECK(first.info.generator["contour_length"] == 14);
  CHECK(first.info.generator["n_train"] == 30);
  REQUIRE(first.info.files.size() == 1);
  CHECK(first.info.files[0].second == file_checksum(path));

  // The tokens are the generator's pixels.
  const Dataset d = generate(0, p, {30, 6, 4});
  CHECK(std::equal(d.val.pixels.begin(), d.val.pixels.end(), first.val.tokens.begin()));
  CHECK(std::vector<int32_t>(d.test.labels) == first.test.labels);

  Dataset cached;
  std::string reason, checksum;
  REQUIRE(read_cache(path, 0, p, {30, 6, 4}, cached, reason, checksum));
  CHECK(same(cached, d));
  CHECK(checksum == file_checksum(path));
  CHECK_FALSE(read_cache(path, 1, p, {30, 6, 4}, cached, reason, checksum));
  CHECK_THAT(reason, Contains("seed 1"));
  CHECK_FALSE(read_cache(path, 0, params_for(32, 6), {30, 6, 4}, cached, reason, checksum));
  CHECK_FALSE(read_cache(path, 0, p, {31, 6, 4}, cached, reason, checksum));
  CHECK_FALSE(read_cache(tmp / "missing.bin", 0, p, {30, 6, 4}, cached, reason, checksum));

  const std::string good = read_text(path);
  // One flipped pixel: the digest catches it; the next load regenerates the same file.
  std::string bad = good;
  bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x40);
  write_text(path, bad);
  CHECK_FALSE(read_cache(path, 0, p, {30, 6, 4}, cached, reason, checksum));
  CHECK_THAT(reason, Contains("digest"));
  const TaskData again = load(opt, 32);
  CHECK(again.train.tokens == first.train.tokens);
  CHECK(read_text(path) == good);
  // A truncated file and a foreign one.
  write_text(path, good.substr(0, good.size() - 100));
  CHECK_FALSE(read_cache(path, 0, p, {30, 6, 4}, cached, reason, checksum));
  CHECK_THAT(reason, Contains("bytes"));
  write_text(path, "not a cache file at all, but long enough to hold a header of fifty-six bytes");
  CHECK_FALSE(read_cache(path, 0, p, {30, 6, 4}, cached, reason, checksum));
  CHECK_THAT(reason, Contains("magic"));
  CHECK(load(opt, 32).train.tokens == first.train.tokens);
  CHECK(read_text(path) == good);
}

TEST_CASE("pathfinder: the released layout round-trips through the writer and the reader", "[pathfinder]") {
  TempDir tmp("pathfinder-release");
  // 1200 images: two imgs/ folders of at most 1000, split 80/10/10.
  const Dataset d = generate(9, params_for(32, 14), {960, 120, 120});
  const std::string dir = write_released_layout(d, tmp.path);
  CHECK(dir == tmp / "pathfinder32/curv_contour_length_14");
  CHECK(fs::is_regular_file(fs::path(dir) / "imgs/0/sample_999.png"));
  CHECK(fs::is_regular_file(fs::path(dir) / "imgs/1/sample_199.png"));
  CHECK_FALSE(fs::exists(fs::path(dir) / "imgs/1/sample_200.png"));
  const std::string meta = read_text(fs::path(dir) / "metadata/1.npy");
  CHECK(meta.rfind(fmt::format("imgs/1 sample_0.png 0 {} 1.0 14 4 2 0.5 1 1\n", d.val.labels[40]), 0) == 0);
  CHECK(std::count(meta.begin(), meta.end(), '\n') == 200);

  std::vector<std::string> tried;
  CHECK(locate_released(tmp.path, 32, 14, tried) == dir);
  CHECK(locate_released(dir, 32, 14, tried) == dir);
  std::vector<std::string> metadata;
  const Dataset back = read_released(dir, params_for(32, 14), 0, 0, 0, metadata);
  CHECK(same(back, d));
  CHECK(back.train.margins == d.train.margins);
  REQUIRE(metadata.size() == 2);
  CHECK(fs::path(metadata[0]).filename() == "0.npy");

  // The first n of each split, decoding nothing else.
  const Dataset part = read_released(dir, params_for(32, 14), 10, 3, 2, metadata);
  CHECK(part.train.size() == 10);
  CHECK(part.val.size() == 3);
  CHECK(part.test.size() == 2);
  CHECK(std::equal(part.val.pixels.begin(), part.val.pixels.end(), d.val.pixels.begin()));
  CHECK_THROWS_WITH(read_released(dir, params_for(32, 14), 0, 121, 0, metadata),
                    Contains("n_val = 121") && Contains("only 120"));

  // The task reads the same folder through --data-dir, also from the release's doubled folder.
  TempDir release("pathfinder-lra-release");
  fs::create_directories(fs::path(release.path) / "lra_release/lra_release");
  fs::rename(fs::path(tmp.path) / "pathfinder32", fs::path(release.path) / "lra_release/lra_release/pathfinder32");
  DataOptions opt = options("", 0, 0, 0);
  opt.data_dir = release.path;
  opt.task_params["zero_is_padding"] = false;
  const TaskData data = find_task("pathfinder").load(opt);
  CHECK(data.info.name == "pathfinder");
  CHECK(data.info.source == "files");
  CHECK(data.info.files.size() == 2);
  CHECK(data.train.size() == 960);
  CHECK(data.val.size() == 120);
  CHECK(data.test.size() == 120);
  CHECK_FALSE(data.test.zero_is_padding);
  CHECK(std::equal(d.test.pixels.begin(), d.test.pixels.end(), data.test.tokens.begin()));
  CHECK(data.test.labels == d.test.labels);

  // An existing non-empty folder is never overwritten.
  fs::create_directories(fs::path(tmp.path) / "pathfinder32/curv_contour_length_14/imgs");
  CHECK_THROWS_WITH(write_released_layout(d, tmp.path), Contains("already exists"));
}

TEST_CASE("pathfinder: empty images are skipped, broken ones named", "[pathfinder]") {
  TempDir tmp("pathfinder-broken");
  Dataset d;
  const fs::path dir = small_release(tmp.path, &d);
  std::vector<std::string> metadata;
  const Params p = params_for(32, 14);

  SECTION("an empty PNG is skipped, as LRA does, and the 80/10/10 split is taken over the rest") {
    write_text(dir / "imgs/0/sample_0.png", "");
    const Dataset back = read_released(dir.string(), p, 0, 0, 0, metadata);
    CHECK(back.train.size() == 7);  // 9 images: 7 / 1 / 1
    CHECK(back.val.size() == 1);
    CHECK(back.test.size() == 1);
    CHECK(std::equal(back.train.pixels.begin(), back.train.pixels.end(), d.train.pixels.begin() + 1024));
    CHECK(back.val.labels[0] == d.val.labels[0]);
  }
  SECTION("a truncated PNG") {
    const std::string png = read_text(dir / "imgs/0/sample_4.png");
    write_text(dir / "imgs/0/sample_4.png", png.substr(0, png.size() / 2));
    CHECK_THROWS_WITH(read_released(dir.string(), p, 0, 0, 0, metadata),
                      Contains("sample_4.png") && Contains("0.npy', line 5"));
  }
  SECTION("a file that is not a PNG") {
    write_text(dir / "imgs/0/sample_2.png", "GIF89a");
    CHECK_THROWS_WITH(read_released(dir.string(), p, 0, 0, 0, metadata), Contains("sample_2.png"));
  }
  SECTION("a PNG of the wrong size") {
    const std::vector<uint8_t> small(16 * 16, 7);
    write_text(dir / "imgs/0/sample_6.png", encode_png(small.data(), 16, 16));
    CHECK_THROWS_WITH(read_released(dir.string(), p, 0, 0, 0, metadata),
                      Contains("sample_6.png") && Contains("16x16") && Contains("32x32"));
  }
  SECTION("a missing image") {
    fs::remove(dir / "imgs/0/sample_9.png");
    CHECK_THROWS_WITH(read_released(dir.string(), p, 0, 0, 0, metadata),
                      Contains("sample_9.png") && Contains("0.npy' (line 10)"));
  }
  SECTION("malformed metadata lines name the file and the line") {
    const fs::path meta = dir / "metadata/0.npy";
    std::string text = read_text(meta);
    const size_t third = text.find('\n', text.find('\n') + 1) + 1;
    const size_t end = text.find('\n', third);
    SECTION("too few fields") {
      write_text(meta, text.substr(0, third) + "imgs/0 sample_2.png 2" + text.substr(end));
      CHECK_THROWS_WITH(read_released(dir.string(), p, 0, 0, 0, metadata),
                        Contains("0.npy") && Contains("line 3") && Contains("found 3"));
    }
    SECTION("a label that is not 0 or 1") {
      write_text(meta, text.substr(0, third) + "imgs/0 sample_2.png 2 7 1.0 14 4 2 0.5 1 1" + text.substr(end));
      CHECK_THROWS_WITH(read_released(dir.string(), p, 0, 0, 0, metadata),
                        Contains("0.npy") && Contains("line 3") && Contains("'7'"));
    }
  }
  SECTION("CRLF line endings and a missing final newline are read") {
    const fs::path meta = dir / "metadata/0.npy";
    std::string text = read_text(meta), crlf;
    for (char c : text) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    crlf.resize(crlf.size() - 2);
    write_text(meta, crlf);
    CHECK(same(read_released(dir.string(), p, 0, 0, 0, metadata), d));
  }
}

TEST_CASE("pathfinder: finding the released folder", "[pathfinder]") {
  TempDir tmp("pathfinder-find");
  std::vector<std::string> tried;
  CHECK(locate_released(tmp.path, 32, 14, tried).empty());
  CHECK(std::find(tried.begin(), tried.end(), tmp / "lra_release/lra_release/pathfinder32/curv_contour_length_14") !=
        tried.end());
  fs::create_directories(fs::path(tmp.path) / "lra_release/pathfinder128/curv_contour_length_14/metadata");
  CHECK(locate_released(tmp.path, 128, 14, tried) == tmp / "lra_release/pathfinder128/curv_contour_length_14");
  fs::create_directories(fs::path(tmp.path) / "lra_release/lra_release/pathfinder128/curv_contour_length_14/metadata");
  CHECK(locate_released(tmp.path, 128, 14, tried) == tmp / "lra_release/lra_release/pathfinder128/curv_contour_length_14");
  fs::create_directories(fs::path(tmp.path) / "x/metadata");
  std::vector<std::string> metadata;
  CHECK_THROWS_WITH(read_released(tmp / "x", params_for(32, 14), 0, 0, 0, metadata), Contains("holds no .npy"));
}

TEST_CASE("pathfinder: PNG encoding round-trips", "[pathfinder]") {
  std::vector<uint8_t> px(32 * 32);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
  const std::string png = encode_png(px.data(), 32, 32);
  CHECK(png.substr(1, 3) == "PNG");
  CHECK(decode_png(png, "x.png", 32, 32) == px);
  CHECK_THROWS_WITH(decode_png(png, "x.png", 64, 64), Contains("x.png") && Contains("32x32"));
}

TEST_CASE("pathfinder: the registered tasks", "[pathfinder]") {
  const Task& pf = find_task("pathfinder");
  const Task& px = find_task("pathx");
  for (const Task* t : {&pf, &px}) {
    CHECK(t->shape({}).vocab_size == 256);
    CHECK(t->shape({}).num_classes == 2);
    CHECK(t->presets().count("paper") == 1);
    CHECK(t->presets().count("cpu") == 1);
    CHECK(t->defaults()["classifier_pool"] == "MEAN");
    CHECK(t->defaults()["learning_rate"] == 0.001);
  }
  CHECK(pf.defaults()["max_length"] == 1024);
  CHECK(pf.defaults()["batch_size"] == 512);
  CHECK(pf.defaults()["num_train_steps"] == 62400);
  CHECK(px.defaults()["max_length"] == 16384);
  CHECK(px.defaults()["grad_clip_norm"] == 1.0);
  CHECK(px.defaults()["learn_pos_emb"] == true);

  const nlohmann::json pp = resolve_task_params(pf, nlohmann::json::object());
  CHECK(pp["resolution"] == 32);
  CHECK(pp["difficulty"] == "hard");
  CHECK(pp["zero_is_padding"] == true);
  CHECK(resolve_task_params(px, nlohmann::json::object())["resolution"] == 128);
  CHECK_THROWS(resolve_task_params(pf, {{"resolution", "big"}}));

  TempDir tmp("pathfinder-task");
  DataOptions opt = options(tmp.path, 4, 2, 2);
  opt.task_params = resolve_task_params(pf, {{"difficulty", "easy"}});
  opt.max_length = 1024;
  const TaskData data = pf.load(opt);
  CHECK(data.info.name == "pathfinder");
  CHECK(data.info.generator["difficulty"] == "easy");
  CHECK(fs::exists(tmp / "pathfinder/pf32-easy-seed0-train4-val2-test2.bin"));

  opt.task_params = resolve_task_params(pf, {{"difficulty", "extreme"}});
  CHECK_THROWS_WITH(pf.load(opt), Contains("\"easy\""));
  opt.task_params = resolve_task_params(pf, {{"resolution", 64}});
  CHECK_THROWS_WITH(pf.load(opt), Contains("4096 tokens") && Contains("max_length=4096"));
  opt.task_params = resolve_task_params(pf, {{"resolution", 100}});
  opt.max_length = 0;
  CHECK_THROWS_WITH(pf.load(opt), Contains("32, 64, 128 or 256"));
}
