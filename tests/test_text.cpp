// Text task tests: TFDS's strip and byte encoding, IMDB fixtures in the release layout (an aclImdb
// folder with unsup and the extra files, and the same tree as aclImdb_v1.tar.gz), split assembly,
// the parsed-data cache, error messages, the gzip/tar helpers, and the stand-in's determinism and
// whole-document label.
#include <omp.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/check.h"
#include "core/files.h"
#include "archive_fixtures.h"
#include "tasks/common/archive.h"
#include "tasks/text/text.h"
#include "tasks/task.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace lra;
using namespace lra::text;
using lra::test::TempDir;
using lra::test::write_tar_gz;
using lra::test::write_gzip;
using Catch::Contains;

namespace {

void write_bytes(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

std::vector<uint16_t> ids_of(const std::string& s) {
  std::vector<uint16_t> out;
  for (unsigned char c : s) out.push_back(static_cast<uint16_t>(c + 1));
  return out;
}

std::vector<uint16_t> example(const Split& s, size_t i) {
  return {s.tokens.begin() + static_cast<std::ptrdiff_t>(s.offsets[i]),
          s.tokens.begin() + static_cast<std::ptrdiff_t>(s.offsets[i + 1])};
}

bool same(const Split& a, const Split& b) {
  return a.tokens == b.tokens && a.offsets == b.offsets && a.labels == b.labels;
}

// A small aclImdb tree as (relative path, contents): `per_label` reviews in each of train/{pos,neg}
// and test/{pos,neg}, plus unsup and the release's other files, which the reader must ignore.
std::vector<std::pair<std::string, std::string>> imdb_tree(int per_label) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const char* split : {"train", "test"})
    for (const char* label : {"neg", "pos"})
      for (int i = 0; i < per_label; ++i) {
        const int rating = std::string(label) == "pos" ? 7 + i % 4 : 1 + i % 4;
        files.emplace_back(fmt::format("aclImdb/{}/{}/{}_{}.txt", split, label, i, rating),
                           fmt::format("{} review {} of {}.<br /><br />It was {}.", label, i, split,
                                       std::string(label) == "pos" ? "fine" : "poor"));
      }
  // Surrounding ASCII whitespace is stripped; the multibyte characters and the non-breaking space
  // (C2 A0, not ASCII whitespace, so bytes.strip() keeps it) are kept byte for byte.
  files.emplace_back("aclImdb/train/pos/100_10.txt", " \t\r\n\xC2\xA0" "Caf\xC3\xA9 na\xC3\xAFve \xE2\x9C\x93 ok\n\n");
  files.emplace_back("aclImdb/train/unsup/0_0.txt", "unlabelled review, ignored");
  files.emplace_back("aclImdb/imdb.vocab", "the\nand\n");
  files.emplace_back("aclImdb/README", "Large Movie Review Dataset v1.0\n");
  files.emplace_back("aclImdb/train/labeledBow.feat", "0 0:1\n");
  files.emplace_back("aclImdb/test/urls_pos.txt", "http://example/1\n");
  return files;
}

void write_tree(const std::string& root, const std::vector<std::pair<std::string, std::string>>& files) {
  for (const auto& [rel, contents] : files) write_bytes(fs::path(root) / rel, contents);
}

DataOptions options(const std::string& data_dir, const std::string& cache_dir) {
  DataOptions opt;
  opt.data_dir = data_dir;
  opt.cache_dir = cache_dir;
  opt.quiet = true;
  opt.task_params = resolve_task_params(find_task("text"), nlohmann::json::object());
  return opt;
}

// Marker counts of a stand-in document decoded from its ids.
std::pair<int, int> marker_counts(const std::vector<uint16_t>& ids, size_t limit) {
  std::string text;
  for (size_t i = 0; i < std::min(limit, ids.size()); ++i) text += static_cast<char>(ids[i] - 1);
  for (size_t at; (at = text.find("<br />")) != std::string::npos;) text.replace(at, 6, " ");
  const auto& pos = standin_markers(1);
  const auto& neg = standin_markers(0);
  int p = 0, n = 0;
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    if (!w.empty() && w.back() == '.') w.pop_back();
    p += std::count(pos.begin(), pos.end(), w) > 0 ? 1 : 0;
    n += std::count(neg.begin(), neg.end(), w) > 0 ? 1 : 0;
  }
  return {p, n};
}

}  // namespace

TEST_CASE("text: bytes.strip() and the byte encoder", "[text]") {
  CHECK(strip_ascii_whitespace(" \t\r\n\v\fabc d \n\f\v") == "abc d");
  CHECK(strip_ascii_whitespace("   ").empty());
  CHECK(strip_ascii_whitespace("\xC2\xA0x\xC2\xA0") == "\xC2\xA0x\xC2\xA0");  // NBSP is not ASCII whitespace
  std::vector<uint16_t> ids;
  append_byte_ids(std::string("A\xC3\xA9\xFF\x01", 4), ids);
  CHECK(ids == std::vector<uint16_t>{66, 0xC4, 0xAA, 256});
  CHECK(find_task("text").shape({}).vocab_size == 257);
}

TEST_CASE("text: an aclImdb folder and its archive give the same reviews", "[text]") {
  TempDir dir("text");
  const auto tree = imdb_tree(2);
  write_tree(dir.path, tree);
  const std::string folder = dir / "aclImdb";
  const ImdbReviews r = read_imdb_folder(folder);
  // train: 2 neg + 3 pos (with 100_10.txt); test: 2 + 2; unsup ignored.
  REQUIRE(r.train.size() == 5);
  REQUIRE(r.test.size() == 4);
  CHECK(r.train.labels == std::vector<int32_t>{0, 0, 1, 1, 1});
  CHECK(r.test.labels == std::vector<int32_t>{0, 0, 1, 1});
  // Sorted by file name within a label: 0_7.txt, 100_10.txt, 1_8.txt.
  CHECK(example(r.train, 0) == ids_of("neg review 0 of train.<br /><br />It was poor."));
  CHECK(example(r.train, 2) == ids_of("pos review 0 of train.<br /><br />It was fine."));
  CHECK(example(r.train, 3) == ids_of("\xC2\xA0" "Caf\xC3\xA9 na\xC3\xAFve \xE2\x9C\x93 ok"));
  CHECK(example(r.train, 4) == ids_of("pos review 1 of train.<br /><br />It was fine."));

  const std::string archive = dir / "aclImdb_v1.tar.gz";
  write_tar_gz(archive, tree);
  const ImdbReviews a = read_imdb_archive(archive);
  CHECK(same(a.train, r.train));
  CHECK(same(a.test, r.test));
  CHECK(a.digest == r.digest);
  CHECK(r.digest.rfind("fnv1a64:", 0) == 0);

  // Where the data is found.
  CHECK(find_imdb("").kind == ImdbSource::None);
  ImdbSource s = find_imdb(dir.path);
  CHECK(s.kind == ImdbSource::Folder);
  CHECK(s.path == folder);
  CHECK(find_imdb(folder).path == folder);
  CHECK(find_imdb(archive).kind == ImdbSource::Archive);
  fs::remove_all(folder);
  s = find_imdb(dir.path);
  CHECK(s.kind == ImdbSource::Archive);
  CHECK(s.path == archive);
  TempDir empty("text");
  s = find_imdb(empty.path);
  CHECK(s.kind == ImdbSource::None);
  CHECK(s.tried.size() == 3);
}

TEST_CASE("text: loading IMDB builds the splits LRA uses and caches the parse", "[text]") {
  TempDir dir("text"), cache("text-cache");
  write_tree(dir.path, imdb_tree(10));
  DataOptions opt = options(dir.path, cache.path);
  const TaskData d = find_task("text").load(opt);
  CHECK(d.info.source == "files");
  CHECK(d.info.name.find("imdb") != std::string::npos);
  CHECK(d.info.path == fs::absolute(dir / "aclImdb").lexically_normal().string());
  REQUIRE(d.info.files.size() == 1);
  CHECK(d.info.generator["cache"]["status"] == "built");
  CHECK(fs::exists(d.info.generator["cache"]["file"].get<std::string>()));
  CHECK(d.train.size() == 21);
  CHECK(d.test.size() == 20);
  CHECK(same(d.val, d.test));  // LRA validates on IMDB's test split
  // Whole splits are IMDB's reviews in the reader's order.
  const ImdbReviews r = read_imdb_folder(dir / "aclImdb");
  CHECK(same(d.train, r.train));
  CHECK(same(d.test, r.test));
  std::multiset<std::vector<uint16_t>> want;
  for (size_t i = 0; i < r.train.size(); ++i) want.insert(example(r.train, i));

  // Reused on the second load.
  const std::string file = d.info.generator["cache"]["file"];
  const auto written = fs::last_write_time(file);
  const TaskData again = find_task("text").load(opt);
  CHECK(again.info.generator["cache"]["status"] == "reused");
  CHECK(fs::last_write_time(file) == written);
  CHECK(same(again.train, d.train));
  CHECK(same(again.test, d.test));
  CHECK(again.info.files == d.info.files);

  // Subsets, truncation, another order.
  opt.n_train = 10;
  opt.n_val = 3;
  opt.n_test = 6;
  opt.max_length = 10;
  const TaskData sub = find_task("text").load(opt);
  CHECK(sub.train.size() == 10);
  // A random subset of both labels, not the first (all neg) reviews.
  CHECK(std::count(sub.train.labels.begin(), sub.train.labels.end(), 1) > 0);
  CHECK(std::count(sub.train.labels.begin(), sub.train.labels.end(), 0) > 0);
  CHECK(sub.val.size() == 3);
  CHECK(sub.test.size() == 6);
  for (size_t i = 0; i < sub.train.size(); ++i) CHECK(sub.train.length(i) == 10);
  opt.n_train = 22;
  CHECK_THROWS_WITH(find_task("text").load(opt), Contains("n_train = 22") && Contains("21"));

  // val_split = train: a held-out 10% of train, deterministic by data_seed.
  opt = options(dir.path, cache.path);
  opt.task_params["val_split"] = "train";
  const TaskData held = find_task("text").load(opt);
  CHECK(held.train.size() == 19);
  CHECK(held.val.size() == 2);
  CHECK(held.test.size() == 20);
  std::multiset<std::vector<uint16_t>> split_union;
  for (size_t i = 0; i < held.train.size(); ++i) split_union.insert(example(held.train, i));
  for (size_t i = 0; i < held.val.size(); ++i) split_union.insert(example(held.val, i));
  CHECK(split_union == want);
  CHECK(same(find_task("text").load(opt).val, held.val));
  opt.data_seed = 1;
  CHECK_FALSE(same(find_task("text").load(opt).train, held.train));
  opt.task_params["val_split"] = "dev";
  CHECK_THROWS_WITH(find_task("text").load(opt), Contains("val_split") && Contains("dev"));
}

TEST_CASE("text: the cache is rebuilt when the sources change or the file is damaged", "[text]") {
  TempDir dir("text"), cache("text-cache");
  const auto tree = imdb_tree(3);
  write_tree(dir.path, tree);
  DataOptions opt = options(dir.path, cache.path);
  const TaskData first = find_task("text").load(opt);
  CHECK(first.info.generator["cache"]["status"] == "built");

  // An edited review (the folder's key is the files' names, sizes and times).
  write_bytes(dir / "aclImdb/test/neg/0_1.txt", "an edited review");
  const TaskData edited = find_task("text").load(opt);
  CHECK(edited.info.generator["cache"]["status"] == "rebuilt");
  CHECK(edited.info.files[0].second != first.info.files[0].second);
  bool has_edit = false;
  for (size_t i = 0; i < edited.test.size(); ++i) has_edit |= example(edited.test, i) == ids_of("an edited review");
  CHECK(has_edit);
  CHECK(find_task("text").load(opt).info.generator["cache"]["status"] == "reused");

  // A damaged cache file: truncated, then one byte flipped.
  const std::string file = edited.info.generator["cache"]["file"];
  fs::resize_file(file, fs::file_size(file) - 5);
  CHECK(find_task("text").load(opt).info.generator["cache"]["status"] == "rebuilt");
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(fs::file_size(file) - 20);
    f.seekg(at);
    const char c = static_cast<char>(f.get());
    f.seekp(at);
    f.put(static_cast<char>(~c));
  }
  const TaskData repaired = find_task("text").load(opt);
  CHECK(repaired.info.generator["cache"]["status"] == "rebuilt");
  CHECK(same(repaired.test, edited.test));

  // The archive's key is its checksum.
  TempDir adir("text");
  write_tar_gz(adir / "aclImdb_v1.tar.gz", tree);
  opt.data_dir = adir.path;
  const TaskData from_archive = find_task("text").load(opt);
  CHECK(from_archive.info.generator["cache"]["status"] == "built");
  CHECK(from_archive.info.files[0].second == file_checksum(adir / "aclImdb_v1.tar.gz"));
  CHECK(same(from_archive.train, first.train));
  CHECK(find_task("text").load(opt).info.generator["cache"]["status"] == "reused");
  auto changed = tree;
  changed[0].second = "changed";
  write_tar_gz(adir / "aclImdb_v1.tar.gz", changed);
  CHECK(find_task("text").load(opt).info.generator["cache"]["status"] == "rebuilt");
}

TEST_CASE("text: malformed IMDB copies give errors naming the file", "[text]") {
  TempDir dir("text");
  const auto tree = imdb_tree(1);
  write_tree(dir.path, tree);
  const std::string folder = dir / "aclImdb";
  fs::remove_all(fs::path(folder) / "test" / "neg");
  CHECK_THROWS_WITH(read_imdb_folder(folder), Contains("test/neg") && Contains(folder));
  write_bytes(fs::path(folder) / "test/neg/5_2.txt", " \n\t ");
  CHECK_THROWS_WITH(read_imdb_folder(folder), Contains("test/neg/5_2.txt") && Contains("empty"));

  // An archive without test/pos reviews, and a truncated archive.
  std::vector<std::pair<std::string, std::string>> partial;
  for (const auto& f : tree)
    if (f.first.find("test/pos") == std::string::npos) partial.push_back(f);
  write_tar_gz(dir / "partial.tar.gz", partial);
  CHECK_THROWS_WITH(read_imdb_archive(dir / "partial.tar.gz"),
                    Contains("partial.tar.gz") && Contains("aclImdb/test/pos/"));
  write_tar_gz(dir / "full.tar.gz", tree);
  std::string bytes = read_file(dir / "full.tar.gz");
  write_file_atomic(dir / "cut.tar.gz", bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH(read_imdb_archive(dir / "cut.tar.gz"), Contains("cut.tar.gz") && Contains("truncated"));
  write_file_atomic(dir / "junk.tar.gz", "this is not an archive at all");
  CHECK_THROWS_WITH(read_imdb_archive(dir / "junk.tar.gz"), Contains("junk.tar.gz"));
  CHECK_THROWS_WITH(read_imdb_archive(dir / "missing.tar.gz"), Contains("missing.tar.gz"));
}

TEST_CASE("text: gzip and tar helpers", "[text]") {
  TempDir dir("text");
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) % 251);
  write_gzip(dir / "a.gz", big);
  CHECK(read_gzip(dir / "a.gz") == big);
  // Two gzip members decompress to their concatenation; a plain file reads as it is.
  write_gzip(dir / "b.gz", "second");
  write_file_atomic(dir / "two.gz", read_file(dir / "a.gz") + read_file(dir / "b.gz"));
  CHECK(read_gzip(dir / "two.gz") == big + "second");
  write_file_atomic(dir / "plain", "not compressed");
  CHECK(read_gzip(dir / "plain") == "not compressed");
  const std::string gz = read_file(dir / "a.gz");
  write_file_atomic(dir / "cut.gz", gz.substr(0, gz.size() - 100));
  CHECK_THROWS_WITH(read_gzip(dir / "cut.gz"), Contains("cut.gz") && Contains("truncated"));
  CHECK_THROWS_WITH(read_gzip(dir / "none.gz"), Contains("none.gz"));

  write_tar_gz(dir / "t.tar.gz", {{"./x/a.txt", "A"}, {"x/b.bin", big}});
  std::vector<std::pair<std::string, size_t>> members;  // every member, in archive order
  for_each_archive_file(
      dir / "t.tar.gz", [](const std::string&) { return true; },
      [&](const std::string& n, std::string& c) { members.emplace_back(n, c.size()); });
  REQUIRE(members.size() == 2);
  CHECK(members[0].first == "./x/a.txt");
  CHECK(members[1].first == "x/b.bin");
  CHECK(members[1].second == big.size());
  std::map<std::string, std::string> got;
  for_each_archive_file(
      dir / "t.tar.gz", [](const std::string& n) { return n.find("b.bin") != std::string::npos; },
      [&](const std::string& n, std::string& c) { got[n] = c; });
  REQUIRE(got.size() == 1);
  CHECK(got["x/b.bin"] == big);
  CHECK(path_components("./aclImdb//train/./x.txt") == std::vector<std::string>{"aclImdb", "train", "x.txt"});

  // A member whose header claims a terabyte (base-256 size field) in a file of two blocks: the claim is not
  // allocated, and reading ends with the archive named as truncated (fuzz/regressions/imdb).
  std::string header(512, '\0');
  header.replace(0, 25, "aclImdb/train/pos/0_9.txt");
  header.replace(100, 8, std::string("0000644") + '\0');
  header[124] = static_cast<char>(0x80);
  header[124 + 6] = 1;  // 2^40 in the last 6 of 12 big-endian bytes
  header.replace(148, 8, std::string(8, ' '));
  header[156] = '0';
  header.replace(257, 8, std::string("ustar") + '\0' + "00");
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  header.replace(148, 8, fmt::format("{:06o}", sum) + '\0' + ' ');
  write_file_atomic(dir / "claim.tar", header + std::string(512, 'x'));
  CHECK_THROWS_WITH(for_each_archive_file(
                        dir / "claim.tar", [](const std::string&) { return true; },
                        [](const std::string&, std::string&) {}),
                    Contains("claim.tar") && Contains("truncated"));
}

TEST_CASE("text: the stand-in is deterministic and labelled by the whole document", "[text]") {
  constexpr int L = 2000;
  const Split a = standin_split(7, kStandInTrain, 400, L);
  CHECK(same(a, standin_split(7, kStandInTrain, 400, L)));
  CHECK_FALSE(same(a, standin_split(8, kStandInTrain, 400, L)));
  CHECK_FALSE(same(a, standin_split(7, kStandInTest, 400, L)));
  // Prefix-stable and independent of the thread count.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Split one = standin_split(7, kStandInTrain, 100, L);
  omp_set_num_threads(threads);
  CHECK(std::equal(one.tokens.begin(), one.tokens.end(), a.tokens.begin()));
  CHECK(std::equal(one.labels.begin(), one.labels.end(), a.labels.begin()));

  int positives = 0, prefix_right = 0, prefix_blind = 0;
  int blind_labels[2] = {0, 0};
  for (size_t i = 0; i < a.size(); ++i) {
    const auto ids = example(a, i);
    CHECK(a.length(i) <= L);
    CHECK(a.length(i) >= L / 2 - 30);
    for (uint16_t t : ids) CHECK((t >= 1 && t <= 256));
    const auto [p, n] = marker_counts(ids, ids.size());
    CHECK(p != n);
    CHECK(a.labels[i] == (p > n ? 1 : 0));  // the label is the whole document's majority
    positives += a.labels[i];
    const auto [pp, pn] = marker_counts(ids, 100);
    const int guess = pp > pn ? 1 : pp < pn ? 0 : 1;
    prefix_right += guess == a.labels[i] ? 1 : 0;
    if (pp == 0 && pn == 0) {
      ++prefix_blind;
      ++blind_labels[a.labels[i]];
    }
  }
  CHECK(positives > 150);
  CHECK(positives < 250);
  // The best rule on the first 100 bytes (their marker majority) is far from the label.
  CHECK(prefix_right < 0.75 * a.size());
  // Documents whose first 100 bytes hold no marker at all still take both labels about evenly.
  REQUIRE(prefix_blind > 40);
  CHECK(blind_labels[0] > prefix_blind / 4);
  CHECK(blind_labels[1] > prefix_blind / 4);
  CHECK_THROWS_WITH(standin_split(1, kStandInTrain, 1, 20), Contains("max_length"));
}

TEST_CASE("text: without IMDB the task loads the stand-in", "[text]") {
  TempDir empty("text"), cache("text-cache");
  DataOptions opt = options(empty.path, cache.path);
  opt.max_length = 300;
  opt.n_train = 50;
  opt.n_val = 10;
  opt.n_test = 20;
  opt.data_seed = 3;
  const TaskData d = find_task("text").load(opt);
  CHECK(d.info.source == "stand-in");
  CHECK(d.info.generated);
  CHECK(d.info.generator_seed == 3);
  CHECK(d.info.name.find("stand-in") != std::string::npos);
  CHECK(d.info.generator["reason"].get<std::string>().find(empty.path) != std::string::npos);
  CHECK(d.train.size() == 50);
  CHECK(d.val.size() == 10);
  CHECK(d.test.size() == 20);
  CHECK(same(d.train, standin_split(3, kStandInTrain, 50, 300)));
  // val = the first test documents, as LRA validates on the test split.
  CHECK(std::equal(d.val.tokens.begin(), d.val.tokens.end(), d.test.tokens.begin()));
  CHECK(fs::is_empty(cache.path));  // generated, not cached

  opt.task_params["val_split"] = "train";
  const TaskData held = find_task("text").load(opt);
  CHECK(same(held.val, standin_split(3, kStandInHeldOut, 10, 300)));
  CHECK(same(held.train, d.train));

  opt.data_dir.clear();
  CHECK(find_task("text").load(opt).info.generator["reason"] == "no --data-dir was given");
}

TEST_CASE("text: the task's config, presets and options", "[text]") {
  const Task& task = find_task("text");
  CHECK(task.shape({}).num_classes == 2);
  const nlohmann::json d = task.defaults();
  CHECK(d["max_length"] == 4000);
  CHECK(d["emb_dim"] == 256);
  CHECK(d["num_heads"] == 4);
  CHECK(d["num_layers"] == 4);
  CHECK(d["qkv_dim"] == 256);
  CHECK(d["mlp_dim"] == 1024);
  CHECK(d["warmup"] == 8000);
  CHECK(d["num_train_steps"] == 20000);
  CHECK(d["learning_rate"] == 0.05);
  CHECK(d["weight_decay"] == 0.1);
  CHECK(d["classifier_pool"] == "CLS");
  CHECK(task.summary().find("1000") != std::string::npos);
  const auto presets = task.presets();
  REQUIRE(presets.count("paper") == 1);
  REQUIRE(presets.count("cpu") == 1);
  for (const auto& [key, value] : presets.at("cpu").items()) {
    INFO(key);
    CHECK((d.contains(key) || key == "n_val" || key == "n_test"));
  }
  const auto params = task.params();
  REQUIRE(params.size() == 1);
  CHECK(params[0].name == "val_split");
  CHECK(params[0].default_value == "test");
}
