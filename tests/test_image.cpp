// Image task tests: TensorFlow's grayscale on known RGB triples, CIFAR-10 binary batches (folder and
// tar.gz) and Fashion-MNIST IDX gz files written by the test in the released formats, the splits,
// the zero-is-padding key mask, the parsed-data cache (reuse, rebuild, damage) and error messages.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>

#include "core/check.h"
#include "core/files.h"
#include "archive_fixtures.h"
#include "tasks/common/archive.h"
#include "tasks/common/cache.h"
#include "tasks/image/image.h"
#include "tasks/task.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace lra;
using namespace lra::image;
using lra::test::TempDir;
using lra::test::write_gzip;
using lra::test::write_tar_gz;
using Catch::Contains;

namespace {

// One CIFAR-10 record: label, then the R, G and B planes.
std::string cifar_record(uint8_t label, uint8_t r, uint8_t g, uint8_t b) {
  std::string rec(1, static_cast<char>(label));
  rec += std::string(1024, static_cast<char>(r)) + std::string(1024, static_cast<char>(g)) +
         std::string(1024, static_cast<char>(b));
  return rec;
}

// A record whose red plane counts up (pixel j = j % 256): checks the row-major plane layout.
std::string cifar_ramp(uint8_t label) {
  std::string rec(1, static_cast<char>(label));
  for (int j = 0; j < 1024; ++j) rec += static_cast<char>(j % 256);
  rec += std::string(2048, '\0');
  return rec;
}

const char* const kBatchNames[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                   "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};

// Five training batches of 4 records (20 in all) and a test batch of 3, as (name, bytes).
std::vector<std::pair<std::string, std::string>> cifar_files() {
  std::vector<std::pair<std::string, std::string>> files;
  for (int k = 0; k < 5; ++k) {
    std::string bytes;
    for (int i = 0; i < 4; ++i) {
      const int n = k * 4 + i;
      bytes += n == 0 ? cifar_ramp(3) : cifar_record(static_cast<uint8_t>(n % 10), 255, 255, 255 - n);
    }
    files.emplace_back(kBatchNames[k], bytes);
  }
  files.emplace_back("test_batch.bin",
                     cifar_record(9, 0, 0, 0) + cifar_record(1, 0, 255, 0) + cifar_record(2, 12, 34, 56));
  return files;
}

void write_cifar_folder(const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& [name, bytes] : cifar_files()) write_file_atomic((dir / name).string(), bytes);
  write_file_atomic((dir / "batches.meta.txt").string(), "airplane\nautomobile\n");
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// IDX bytes: images [n, 28, 28] with pixel (i, j) = (i + j) % 256 masked to 0 on even j, labels i % 10.
std::string idx_images(uint32_t n) {
  std::string s = be32(0x803) + be32(n) + be32(28) + be32(28);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t j = 0; j < 784; ++j) s += static_cast<char>(j % 2 == 0 ? 0 : (i + j) % 256);
  return s;
}

std::string idx_labels(uint32_t n) {
  std::string s = be32(0x801) + be32(n);
  for (uint32_t i = 0; i < n; ++i) s += static_cast<char>(i % 10);
  return s;
}

void write_fashion(const fs::path& dir, uint32_t n_train = 12, uint32_t n_test = 5) {
  fs::create_directories(dir);
  write_gzip((dir / "train-images-idx3-ubyte.gz").string(), idx_images(n_train));
  write_gzip((dir / "train-labels-idx1-ubyte.gz").string(), idx_labels(n_train));
  write_gzip((dir / "t10k-images-idx3-ubyte.gz").string(), idx_images(n_test));
  write_gzip((dir / "t10k-labels-idx1-ubyte.gz").string(), idx_labels(n_test));
}

DataOptions options(const std::string& data_dir, const std::string& cache_dir, const nlohmann::json& params = {}) {
  DataOptions opt;
  opt.data_dir = data_dir;
  opt.cache_dir = cache_dir;
  opt.quiet = true;
  opt.task_params = resolve_task_params(find_task("image"), params.is_null() ? nlohmann::json::object() : params);
  return opt;
}

bool same(const Split& a, const Split& b) {
  return a.tokens == b.tokens && a.offsets == b.offsets && a.labels == b.labels;
}

}  // namespace

TEST_CASE("image: grayscale matches tf.image.rgb_to_grayscale", "[image]") {
  // Expected values from a float32 emulation of TensorFlow's formula, truncating g * 255.5.
  CHECK(tf_grayscale(255, 255, 255) == 255);
  CHECK(tf_grayscale(0, 0, 0) == 0);
  CHECK(tf_grayscale(255, 0, 0) == 76);
  CHECK(tf_grayscale(0, 255, 0) == 149);  // 149.98: truncated, not rounded
  CHECK(tf_grayscale(0, 0, 255) == 29);
  CHECK(tf_grayscale(200, 100, 50) == 124);
  CHECK(tf_grayscale(12, 34, 56) == 29);  // 29.99
  for (int c = 0; c < 256; ++c) {
    INFO(c);
    CHECK(tf_grayscale(static_cast<uint8_t>(c), static_cast<uint8_t>(c), static_cast<uint8_t>(c)) == c);
  }
}

TEST_CASE("image: CIFAR-10 binary batches from a folder and from the archive", "[image]") {
  TempDir dir("image");
  const fs::path folder = fs::path(dir.path) / "cifar-10-batches-bin";
  write_cifar_folder(folder);
  const Parsed p = read_cifar_folder(folder.string());
  REQUIRE(p.train.size() == 20);
  REQUIRE(p.test.size() == 3);
  for (size_t i = 0; i < p.train.size(); ++i) CHECK(p.train.length(static_cast<size_t>(i)) == 1024);
  CHECK(p.train.labels[0] == 3);
  for (int j = 0; j < 1024; ++j) CHECK(p.train.tokens[static_cast<size_t>(j)] == tf_grayscale(j % 256, 0, 0));
  CHECK(p.train.labels[7] == 7);
  CHECK(p.train.tokens[7 * 1024 + 500] == tf_grayscale(255, 255, 248));
  CHECK(p.train.tokens[1 * 1024] == 255);  // (255, 255, 254)
  CHECK(p.test.labels == std::vector<int32_t>{9, 1, 2});
  CHECK(p.test.tokens[5] == 0);
  CHECK(p.test.tokens[1024 + 5] == 149);
  CHECK(p.test.tokens[2048 + 1023] == 29);

  std::vector<std::pair<std::string, std::string>> members;
  for (const auto& [name, bytes] : cifar_files()) members.emplace_back("cifar-10-batches-bin/" + name, bytes);
  members.emplace_back("cifar-10-batches-bin/readme.html", "<html></html>");
  write_tar_gz(dir / "cifar-10-binary.tar.gz", members);
  const Parsed a = read_cifar_archive(dir / "cifar-10-binary.tar.gz");
  CHECK(same(a.train, p.train));
  CHECK(same(a.test, p.test));

  Source src;
  std::vector<std::string> tried;
  REQUIRE(find_cifar(dir.path, src, tried));
  CHECK(src.kind == Source::Folder);
  CHECK(src.path == folder.string());
  tried.clear();
  REQUIRE(find_cifar(folder.string(), src, tried));
  CHECK(src.path == folder.string());
  fs::remove_all(folder);
  tried.clear();
  REQUIRE(find_cifar(dir.path, src, tried));
  CHECK(src.kind == Source::Archive);
  tried.clear();
  TempDir empty("image");
  CHECK_FALSE(find_cifar(empty.path, src, tried));
  CHECK(tried.size() == 3);
}

TEST_CASE("image: malformed CIFAR-10 files give errors naming the file", "[image]") {
  TempDir dir("image");
  const fs::path folder = fs::path(dir.path) / "cifar-10-batches-bin";
  write_cifar_folder(folder);
  const std::string b3 = (folder / "data_batch_3.bin").string();
  const std::string good = read_file(b3);
  write_file_atomic(b3, good.substr(0, good.size() - 1));  // a truncated last record
  CHECK_THROWS_WITH(read_cifar_folder(folder.string()),
                    Contains("data_batch_3.bin") && Contains("whole number") && Contains("3073"));
  std::string bad_label = good;
  bad_label[3073] = 10;
  write_file_atomic(b3, bad_label);
  CHECK_THROWS_WITH(read_cifar_folder(folder.string()),
                    Contains("data_batch_3.bin") && Contains("record 1") && Contains("label 10"));
  fs::remove(b3);
  CHECK_THROWS_WITH(read_cifar_folder(folder.string()), Contains("data_batch_3.bin") && Contains("missing"));

  std::vector<std::pair<std::string, std::string>> members;
  for (const auto& [name, bytes] : cifar_files())
    if (name != "test_batch.bin") members.emplace_back("cifar-10-batches-bin/" + name, bytes);
  write_tar_gz(dir / "partial.tar.gz", members);
  CHECK_THROWS_WITH(read_cifar_archive(dir / "partial.tar.gz"),
                    Contains("partial.tar.gz") && Contains("test_batch.bin"));
}

TEST_CASE("image: Fashion-MNIST IDX files", "[image]") {
  TempDir dir("image");
  write_fashion(dir.path);
  const Parsed p = read_fashion_mnist(dir.path);
  REQUIRE(p.train.size() == 12);
  REQUIRE(p.test.size() == 5);
  CHECK(p.train.length(0) == 784);
  CHECK(p.train.labels[11] == 1);
  CHECK(p.train.tokens[3 * 784 + 101] == (3 + 101) % 256);
  CHECK(p.train.tokens[3 * 784 + 100] == 0);
  CHECK(p.test.labels == std::vector<int32_t>{0, 1, 2, 3, 4});

  // Decompressed files are read too.
  TempDir plain("image");
  write_file_atomic(plain / "train-images-idx3-ubyte", idx_images(12));
  write_file_atomic(plain / "train-labels-idx1-ubyte", idx_labels(12));
  write_file_atomic(plain / "t10k-images-idx3-ubyte", idx_images(5));
  write_file_atomic(plain / "t10k-labels-idx1-ubyte", idx_labels(5));
  CHECK(same(read_fashion_mnist(plain.path).train, p.train));
}

TEST_CASE("image: malformed IDX files give errors naming the file", "[image]") {
  TempDir dir("image");
  write_fashion(dir.path);
  const std::string images = dir / "train-images-idx3-ubyte.gz", labels = dir / "train-labels-idx1-ubyte.gz";
  // Bad magic: a label file where the images should be.
  write_gzip(images, idx_labels(12));
  CHECK_THROWS_WITH(read_fashion_mnist(dir.path),
                    Contains(images) && Contains("magic") && Contains("0x00000801") && Contains("0x00000803"));
  // Fewer pixels than the header declares.
  const std::string full = idx_images(12);
  write_gzip(images, full.substr(0, full.size() - 10));
  CHECK_THROWS_WITH(read_fashion_mnist(dir.path), Contains(images) && Contains("truncated"));
  // A truncated gzip stream.
  write_gzip(images, full);
  const std::string gz = read_file(images);
  write_file_atomic(images, gz.substr(0, gz.size() / 2));
  CHECK_THROWS_WITH(read_fashion_mnist(dir.path), Contains(images) && Contains("truncated"));
  // As many labels as images.
  write_gzip(images, full);
  write_gzip(labels, idx_labels(11));
  CHECK_THROWS_WITH(read_fashion_mnist(dir.path),
                    Contains("size mismatch") && Contains(images) && Contains(labels) && Contains("12 images") &&
                        Contains("11 labels"));
  fs::remove(labels);
  CHECK_THROWS_WITH(read_fashion_mnist(dir.path), Contains(dir.path) && Contains("train-labels-idx1-ubyte"));
  // Dimensions whose product wraps past 2^64 to the data's size, 0 (fuzz/regressions/idx).
  std::vector<uint32_t> dims;
  CHECK_THROWS_WITH(parse_idx(be32(0x803) + be32(0x80000000u) + be32(0x80000000u) + be32(4), "wrap.idx", 0x803, dims),
                    Contains("wrap.idx") && Contains("multiply past 2^64"));
}

TEST_CASE("image: the task's splits, dataset choice and key mask", "[image]") {
  TempDir dir("image"), cache("image-cache");
  write_cifar_folder(fs::path(dir.path) / "cifar-10-batches-bin");
  write_fashion(fs::path(dir.path) / "fashion-mnist");

  // auto: CIFAR-10 is found first; train[:90%] / train[90%:] / test.
  DataOptions opt = options(dir.path, cache.path);
  const TaskData c = image::load(opt, "");
  CHECK(c.info.generator["dataset"] == "cifar10");
  CHECK(c.info.source == "files");
  CHECK(c.info.files.size() == 6);
  CHECK(c.info.files[5].second == file_checksum(c.info.files[5].first));
  CHECK(c.train.size() == 18);
  CHECK(c.val.size() == 2);
  CHECK(c.test.size() == 3);
  const Parsed p = read_cifar_folder(dir / "cifar-10-batches-bin");
  CHECK(std::equal(c.train.tokens.begin(), c.train.tokens.end(), p.train.tokens.begin()));
  CHECK(std::equal(c.val.tokens.begin(), c.val.tokens.end(), p.train.tokens.begin() + 18 * 1024));
  CHECK(c.val.labels == std::vector<int32_t>{8, 9});

  // fashion-mnist: 784 tokens; 12 -> 11 / 1 (closest to 90%).
  opt = options(dir.path, cache.path, {{"dataset", "fashion-mnist"}});
  const TaskData f = image::load(opt, "");
  CHECK(f.info.generator["dataset"] == "fashion-mnist");
  CHECK(f.info.files.size() == 4);
  CHECK(f.train.size() == 11);
  CHECK(f.val.size() == 1);
  CHECK(f.test.size() == 5);
  CHECK(f.train.length(0) == 784);
  CHECK(f.val.labels == std::vector<int32_t>{1});

  // zero_is_padding: pixel 0 is hidden from attention, as in LRA's model (inputs > 0).
  REQUIRE(f.train.zero_is_padding);
  const Batch b = make_batch(f.train, {0, 3}, 1024);
  REQUIRE(b.key_mask.size() == b.tokens.size());
  REQUIRE(b.tokens.size() == 2 * 784);
  for (size_t i = 0; i < b.tokens.size(); ++i) CHECK(b.key_mask[i] == (b.tokens[i] != 0 ? 1 : 0));
  size_t masked = 0;
  for (auto m : b.key_mask) masked += m == 0 ? 1 : 0;
  CHECK(masked >= 784);  // the even columns, and a few pixels (i + j) % 256 == 0
  opt = options(dir.path, cache.path, {{"dataset", "fashion-mnist"}, {"zero_is_padding", false}});
  const TaskData all = image::load(opt, "");
  CHECK_FALSE(all.train.zero_is_padding);
  CHECK(make_batch(all.train, {0, 3}, 1024).key_mask.empty());
  CHECK(all.info.generator["zero_is_padding"] == false);

  // Subsets and truncation.
  opt = options(dir.path, cache.path);
  opt.n_train = 5;
  opt.n_val = 1;
  opt.n_test = 2;
  opt.max_length = 100;
  const TaskData sub = image::load(opt, "");
  CHECK(sub.train.size() == 5);
  CHECK(sub.val.size() == 1);
  CHECK(sub.test.size() == 2);
  CHECK(sub.train.length(4) == 100);
  opt.n_val = 3;
  CHECK_THROWS_WITH(image::load(opt, ""), Contains("n_val = 3") && Contains("only 2"));

  // auto without CIFAR-10 falls back to Fashion-MNIST; insisting on CIFAR-10 is an error.
  TempDir fm("image");
  write_fashion(fm.path);
  CHECK(image::load(options(fm.path, cache.path), "").info.generator["dataset"] == "fashion-mnist");
  CHECK_THROWS_WITH(image::load(options(fm.path, cache.path, {{"dataset", "cifar10"}}), ""),
                    Contains("cifar-10-binary.tar.gz") && Contains(fm.path));
  TempDir none("image");
  CHECK_THROWS_WITH(image::load(options(none.path, cache.path), ""),
                    Contains("Fashion-MNIST") && Contains("dataset-fashion-mnist") && Contains(none.path));
  CHECK_THROWS_WITH(image::load(options(none.path, cache.path, {{"dataset", "mnist"}}), ""),
                    Contains("dataset") && Contains("mnist"));
  CHECK_THROWS(options(none.path, cache.path, {{"zero_is_padding", "yes"}}));
}

TEST_CASE("image: the parsed-data cache is reused and rebuilt when the sources change", "[image]") {
  TempDir dir("image"), cache("image-cache");
  write_cifar_folder(dir.path);
  const DataOptions opt = options(dir.path, cache.path);
  const TaskData first = image::load(opt, "");
  CHECK(first.info.generator["cache"]["status"] == "built");
  const std::string file = first.info.generator["cache"]["file"];
  CHECK(fs::path(file).parent_path() == fs::path(cache.path) / "image");
  const TaskData second = image::load(opt, "");
  CHECK(second.info.generator["cache"]["status"] == "reused");
  CHECK(same(second.train, first.train));
  CHECK(same(second.test, first.test));
  CHECK(second.info.files == first.info.files);

  // A modified batch (same size, other pixels).
  std::string b5 = read_file(dir / "data_batch_5.bin");
  b5[3073 * 3 + 1] = 0;
  write_file_atomic(dir / "data_batch_5.bin", b5);
  const TaskData third = image::load(opt, "");
  CHECK(third.info.generator["cache"]["status"] == "rebuilt");
  CHECK(third.info.files[4].second != first.info.files[4].second);
  CHECK(third.val.tokens[1024] == tf_grayscale(0, 255, 236));
  CHECK(image::load(opt, "").info.generator["cache"]["status"] == "reused");

  // Only the finished file is left in the cache folder.
  CHECK(std::distance(fs::directory_iterator(fs::path(cache.path) / "image"), fs::directory_iterator()) == 1);
}

TEST_CASE("image: cache files detect damage and other keys", "[image]") {
  TempDir dir("image");
  cache::Entry e;
  e.meta["files"] = {{"a", "b"}};
  Split narrow, wide;
  narrow.add({0, 1, 255}, 4);
  narrow.add({7}, 9);
  narrow.zero_is_padding = true;
  wide.add({256, 1, 40000}, 1);
  wide.add({}, 0);
  e.splits.emplace_back("narrow", narrow);
  e.splits.emplace_back("wide", wide);
  const std::string path = dir / "x.lracache";
  cache::write(path, "key-1", e);
  cache::ReadResult r = cache::read(path, "key-1");
  REQUIRE(r.status == cache::Status::Reused);
  CHECK(r.entry.meta == e.meta);
  CHECK(same(r.entry.split("narrow"), narrow));
  CHECK(r.entry.split("narrow").zero_is_padding);
  CHECK(same(r.entry.split("wide"), wide));
  CHECK_THROWS_WITH(r.entry.split("other"), Contains("other"));

  CHECK(cache::read(dir / "absent.lracache", "key-1").status == cache::Status::Missing);
  r = cache::read(path, "key-2");
  CHECK(r.status == cache::Status::Stale);
  CHECK_THAT(r.reason, Contains("other source files"));

  const std::string good = read_file(path);
  write_file_atomic(path, good.substr(0, good.size() - 3));
  CHECK(cache::read(path, "key-1").status == cache::Status::Corrupt);
  std::string flipped = good;
  flipped[flipped.size() - 12] ^= 0x01;
  write_file_atomic(path, flipped);
  r = cache::read(path, "key-1");
  CHECK(r.status == cache::Status::Corrupt);
  CHECK_THAT(r.reason, Contains("digest"));
  write_file_atomic(path, "NOTCACHE" + good.substr(8));
  CHECK(cache::read(path, "key-1").status == cache::Status::Corrupt);
  std::string other_version = good;
  other_version[8] = static_cast<char>(cache::kVersion + 1);
  write_file_atomic(path, other_version);
  CHECK(cache::read(path, "key-1").status == cache::Status::Stale);

  // A header field of another type is a corrupt file, not an escaping JSON exception or a float cast out of
  // range (fuzz/regressions/data_cache).
  auto with_header = [&](const std::function<void(nlohmann::json&)>& edit) {
    uint32_t n = 0;
    std::memcpy(&n, good.data() + 12, 4);
    nlohmann::json h = nlohmann::json::parse(good.substr(16, n));
    edit(h);
    const std::string text = h.dump();
    const auto m = static_cast<uint32_t>(text.size());
    write_file_atomic(path, good.substr(0, 12) + std::string(reinterpret_cast<const char*>(&m), 4) + text +
                                good.substr(16 + n));
    return cache::read(path, "key-1");
  };
  REQUIRE(with_header([](nlohmann::json&) {}).status == cache::Status::Reused);  // the helper rewrites it faithfully
  const std::vector<std::function<void(nlohmann::json&)>> edits = {
      [](nlohmann::json& h) { h["splits"][0]["zero_is_padding"] = 1; },
      [](nlohmann::json& h) { h["splits"][0]["name"] = 5; },
      [](nlohmann::json& h) { h["splits"][0]["examples"] = 1e300; },
      [](nlohmann::json& h) {
        h["splits"][0]["origins"] = {{"sources", {"a"}}, {"units", {"line"}}, {"source", {0, 0}}, {"item", {1e300, 1}}};
      }};
  for (const auto& edit : edits) {
    const cache::ReadResult bad = with_header(edit);
    CHECK(bad.status == cache::Status::Corrupt);
    CHECK_THAT(bad.reason, Contains("expected JSON") || Contains("not a non-negative integer"));
  }

  // load_or_build rebuilds a damaged file and reuses a good one.
  int builds = 0;
  auto build = [&] {
    ++builds;
    return e;
  };
  CHECK(cache::load_or_build(path, "key-1", "test", true, build).status == "rebuilt");
  CHECK(cache::load_or_build(path, "key-1", "test", true, build).status == "reused");
  CHECK(builds == 1);
  const std::string nested = dir / "sub/dir/y.lracache";
  CHECK(cache::load_or_build(nested, "k", "test", true, build).status == "built");
  CHECK(fs::exists(nested));
}

TEST_CASE("image: Debian's Fashion-MNIST, when installed", "[image]") {
  if (!fs::exists(fs::path(kSystemFashionMnist) / "train-images-idx3-ubyte.gz")) {
    LRA_SKIP("no " << kSystemFashionMnist << " (apt-get install dataset-fashion-mnist)");
  }
  TempDir empty("image"), cache("image-cache");
  const TaskData d = find_task("image").load(options(empty.path, cache.path));
  CHECK(d.info.generator["dataset"] == "fashion-mnist");
  CHECK(d.info.path == kSystemFashionMnist);
  CHECK(d.train.size() == 54000);
  CHECK(d.val.size() == 6000);
  CHECK(d.test.size() == 10000);
  CHECK(d.train.tokens.size() == 54000u * 784u);
  std::vector<int> counts(10, 0);
  for (int32_t l : d.test.labels) ++counts[static_cast<size_t>(l)];
  for (int n : counts) CHECK(n == 1000);  // Fashion-MNIST's test set is balanced
}

TEST_CASE("image: the task's config, presets and options", "[image]") {
  const Task& task = find_task("image");
  CHECK(task.shape({}).vocab_size == 256);
  CHECK(task.shape({}).num_classes == 10);
  const nlohmann::json d = task.defaults();
  CHECK(d["max_length"] == 1024);
  CHECK(d["batch_size"] == 256);
  CHECK(d["num_train_steps"] == 35000);
  CHECK(d["steps_per_cycle"] == 35000);
  CHECK(d["warmup"] == 175);
  CHECK(d["learning_rate"] == 0.0005);
  CHECK(d["factors"] == "constant * linear_warmup * cosine_decay");
  CHECK(d["weight_decay"] == 0.0);
  CHECK(d["dropout_rate"] == 0.3);
  CHECK(d["attention_dropout_rate"] == 0.2);
  CHECK(d["learn_pos_emb"] == true);
  CHECK(d["classifier_pool"] == "CLS");
  const auto presets = task.presets();
  REQUIRE(presets.count("paper") == 1);
  REQUIRE(presets.count("cpu") == 1);
  for (const auto& [key, value] : presets.at("cpu").items()) {
    INFO(key);
    CHECK((d.contains(key) || key == "n_val" || key == "n_test"));
  }
  const auto params = task.params();
  REQUIRE(params.size() == 2);
  CHECK(params[0].name == "dataset");
  CHECK(params[0].default_value == "auto");
  CHECK(params[1].name == "zero_is_padding");
  CHECK(params[1].default_value == true);
}
