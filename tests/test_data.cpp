// `lra data status|fetch|generate` through the built binary, and the tasks' data_status() and fallback
// behind them: fixture folders in the released layouts, downloads from file:// and from a tiny local
// HTTP server (which ignores Range requests, as some servers do), and generated data read back by the
// tasks' own readers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/files.h"
#include "archive_fixtures.h"
#include "tasks/common/archive.h"
#include "tasks/common/download.h"
#include "tasks/image/image.h"
#include "tasks/listops/listops.h"
#include "tasks/pathfinder/pathfinder.h"
#include "tasks/task.h"
#include "cli_util.h"
#include "test_util.h"

using namespace lra;
using Catch::Matchers::Contains;
using lra::test::CliResult;
using lra::test::run_lra;
using lra::test::TempDir;
using lra::test::write_tar_gz;
namespace fs = std::filesystem;

namespace {

// `lra data status --json` as a map from task name to its row.
std::map<std::string, nlohmann::json> status_rows(const CliResult& r) {
  INFO(r.out);
  const nlohmann::json status = nlohmann::json::parse(r.out);
  std::map<std::string, nlohmann::json> rows;
  for (const auto& row : status.at("tasks")) rows[row["task"].get<std::string>()] = row;
  return rows;
}

bool same(const Split& a, const Split& b) {
  return a.tokens == b.tokens && a.offsets == b.offsets && a.labels == b.labels;
}

bool same(const pathfinder::ImageSet& a, const pathfinder::ImageSet& b) {
  return a.pixels == b.pixels && a.labels == b.labels;
}

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  write_file_atomic(p.string(), s);
}

// aclImdb/{train,test}/{pos,neg}/ with two reviews each.
void write_imdb_folder(const fs::path& root) {
  for (const char* split : {"train", "test"})
    for (const char* label : {"pos", "neg"})
      for (int i = 0; i < 2; ++i)
        write_text(root / "aclImdb" / split / label / fmt::format("{}_{}.txt", i, label[0] == 'p' ? 9 : 2),
                   fmt::format("A {} review number {} of {}.<br />", label, i, split));
}

// cifar-10-batches-bin/ with two records in each of the six files: 10 training images, 2 test images.
void write_cifar_folder(const fs::path& root) {
  const char* files[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                         "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
  int k = 0;
  for (const char* f : files) {
    std::string bytes;
    for (int r = 0; r < 2; ++r, ++k) {
      bytes += static_cast<char>(k % 10);
      for (int i = 0; i < 3 * 1024; ++i) bytes += static_cast<char>((i * 7 + k) % 256);
    }
    write_text(root / "cifar-10-batches-bin" / f, bytes);
  }
}

void write_listops(const fs::path& dir, const TaskData& d) {
  fs::create_directories(dir);
  listops::write_tsv((dir / "basic_train.tsv").string(), d.train);
  listops::write_tsv((dir / "basic_val.tsv").string(), d.val);
  listops::write_tsv((dir / "basic_test.tsv").string(), d.test);
}

// IMDB, CIFAR-10 and ListOps fixture files under root, in the released layouts; returns the ListOps data,
// which is written to listops_dir.
TaskData write_fixture_folder(const fs::path& root, const fs::path& listops_dir) {
  write_imdb_folder(root);
  write_cifar_folder(root);
  TaskData lo = listops::generate(5, {12, 4, 4});
  write_listops(listops_dir, lo);
  return lo;
}

// A small stand-in for lra_release.gz: the release's folders under lra_release/, each with a file or two.
std::string make_release(const fs::path& dir, const TaskData& listops_data) {
  TempDir tsv("data-release-tsv");
  write_listops(tsv.path, listops_data);
  std::vector<std::pair<std::string, std::string>> members;
  for (const char* f : {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"})
    members.emplace_back(std::string("lra_release/listops-1000/") + f, read_file(tsv / f));
  members.emplace_back("lra_release/tsv_data/new_aan_pairs.train.tsv", "1\ta\tb\tdoc one\tdoc two\n");
  members.emplace_back("lra_release/pathfinder32/curv_baseline/metadata/0.npy", "imgs/0 sample_0.png 0 1\n");
  members.emplace_back("lra_release/pathfinder64/curv_baseline/metadata/0.npy", "imgs/0 sample_0.png 0 0\n");
  members.emplace_back("lra_release/README", "not needed by any task\n");
  const std::string path = (dir / "lra_release.gz").string();
  write_tar_gz(path, members);
  return path;
}

// A one-thread HTTP/1.0 server on 127.0.0.1: GET /<name> answers 200 with the whole file, ignoring any
// Range header (as some servers do); any other path answers 404.
class TinyHttpServer {
 public:
  explicit TinyHttpServer(std::map<std::string, std::string> files) : files_(std::move(files)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd_, 8) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TinyHttpServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/", port_); }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++requests_;
      std::string request;
      char buf[1024];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t got = recv(c, buf, sizeof buf, 0);
        if (got <= 0) break;
        request.append(buf, static_cast<size_t>(got));
      }
      const size_t start = request.find(" /"), end = request.find(' ', start + 1);
      const std::string name = start == std::string::npos ? "" : request.substr(start + 2, end - start - 2);
      const auto it = files_.find(name);
      const std::string body = it == files_.end() ? "not found\n" : it->second;
      const std::string head = fmt::format("HTTP/1.0 {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                           it == files_.end() ? "404 Not Found" : "200 OK", body.size());
      const std::string reply = head + body;
      for (size_t sent = 0; sent < reply.size();) {
        const ssize_t n = send(c, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      close(c);
    }
  }

  std::map<std::string, std::string> files_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

bool leftovers(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp") != std::string::npos || name.find(".part") != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("data status: without a data folder, the built-in sources, nothing generated", "[data]") {
  TempDir cache("data-cache");
  CliResult r = run_lra(fmt::format("data status --json --cache-dir {}", cache.path));
  INFO(r.err);
  auto rows = status_rows(r);
  REQUIRE(rows.size() == task_names().size());

  const auto& listops = rows.at("listops");
  CHECK(listops["source"] == "generated");
  CHECK(listops["reason"] == "no --data-dir was given");
  CHECK(listops["n_train"] == 96000);
  CHECK(listops["n_val"] == 2000);
  CHECK(listops["n_test"] == 2000);
  CHECK(listops["seed"] == 0);
  CHECK(listops["cached"] == false);
  CHECK(listops["files"].empty());
  CHECK(listops["path"] == (fs::path(cache.path) / "listops/seed0-train96000-val2000-test2000").string());

  const auto& text = rows.at("text");
  CHECK(text["source"] == "stand-in");
  CHECK(text["reason"] == "no --data-dir was given");
  CHECK(text["n_train"] == 25000);
  CHECK(text["n_val"] == 2000);  // the cpu preset's n_val and n_test
  CHECK(text["n_test"] == 5000);

  const auto& pf = rows.at("pathfinder");
  CHECK(pf["source"] == "generated");
  CHECK(pf["n_train"] == 20000);
  CHECK(pf["cached"] == false);
  CHECK(pf["details"]["resolution"] == 32);
  CHECK(pf["details"]["difficulty"] == "hard");
  CHECK(rows.at("pathx")["details"]["resolution"] == 128);
  CHECK(rows.at("pathx")["n_train"] == 2000);

  const auto& image = rows.at("image");
  if (fs::exists(fs::path(image::kSystemFashionMnist) / "train-images-idx3-ubyte.gz")) {
    REQUIRE(r.rc == 0);
    CHECK(image["source"] == "files");
    CHECK_THAT(image["reason"].get<std::string>(),
               Contains("no --data-dir was given for CIFAR-10") && Contains(image::kSystemFashionMnist));
    CHECK(image["n_train"] == 54000);
    CHECK(image["files"].size() == 4);
  } else {
    CHECK(r.rc == 1);
    CHECK_THAT(image["error"].get<std::string>(), Contains("dataset-fashion-mnist"));
  }
  // Nothing was generated: no generator cache exists.
  CHECK_FALSE(fs::exists(fs::path(cache.path) / "listops"));
  CHECK_FALSE(fs::exists(fs::path(cache.path) / "pathfinder"));

  // LRA's sizes with the paper preset; a cache that exists is reported with its checksum.
  r = run_lra(fmt::format("data status --json --task pathfinder --preset paper --cache-dir {}", cache.path));
  rows = status_rows(r);
  REQUIRE(rows.size() == 1);
  CHECK(rows.at("pathfinder")["n_train"] == 160000);
  CHECK(rows.at("pathfinder")["n_val"] == 20000);
  DataOptions opt;
  opt.cache_dir = cache.path;
  opt.n_train = 8;
  opt.n_val = 1;
  opt.n_test = 1;
  opt.quiet = true;
  const TaskData generated = find_task("listops").load(opt);
  r = run_lra(fmt::format("data status --json --task listops --set n_train=8 --set n_val=1 --set n_test=1 "
                          "--cache-dir {}",
                          cache.path));
  const auto cached = status_rows(r).at("listops");
  CHECK(cached["cached"] == true);
  CHECK(cached["path"] == generated.info.path);
  REQUIRE(cached["files"].size() == 3);
  CHECK(cached["files"][0]["checksum"] == generated.info.files[0].second);

  // The table names the same sources and reasons.
  r = run_lra(fmt::format("data status --task listops --cache-dir {}", cache.path));
  CHECK_THAT(r.out, Contains("listops") && Contains("generated") && Contains("no --data-dir was given") &&
                        Contains("not generated yet"));
}

TEST_CASE("data status: fixture folders give the files, the reasons and the counts", "[data]") {
  TempDir dir("data-fixtures"), cache("data-cache");
  const fs::path root(dir.path);
  const fs::path listops_dir = root / "lra_release" / "lra_release" / "listops-1000";
  write_fixture_folder(root, listops_dir);
  const pathfinder::Dataset pf = pathfinder::generate(3, pathfinder::params_for(32, 14), {8, 1, 1});
  const std::string pf_dir = pathfinder::write_released_layout(pf, dir.path);

  const std::string args = fmt::format("data status --json --preset paper --data-dir {} --cache-dir {}", dir.path,
                                       cache.path);
  CliResult r = run_lra(args);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  auto rows = status_rows(r);

  const auto& listops = rows.at("listops");
  CHECK(listops["source"] == "files");
  CHECK(listops["path"] == listops_dir.string());
  CHECK_THAT(listops["reason"].get<std::string>(), Contains("found") && Contains(listops_dir.string()));
  CHECK(listops["n_train"] == 12);
  CHECK(listops["n_val"] == 4);
  CHECK(listops["n_test"] == 4);
  REQUIRE(listops["files"].size() == 3);
  CHECK(listops["files"][1]["path"] == (listops_dir / "basic_val.tsv").string());
  CHECK(listops["files"][1]["checksum"] == file_checksum((listops_dir / "basic_val.tsv").string()));

  const auto& text = rows.at("text");
  CHECK(text["source"] == "files");
  CHECK(text["dataset"] == "IMDB (aclImdb folder)");
  CHECK_THAT(text["reason"].get<std::string>(), Contains("aclImdb"));
  CHECK(text["n_train"] == 4);
  CHECK(text["n_val"] == 4);  // LRA validates on IMDB's test split
  CHECK(text["n_test"] == 4);
  CHECK(text["details"]["cache"]["status"] == "built");

  const auto& image = rows.at("image");
  CHECK(image["source"] == "files");
  CHECK_THAT(image["dataset"].get<std::string>(), Contains("CIFAR-10"));
  CHECK(image["n_train"] == 9);  // train[:90%] of 10
  CHECK(image["n_val"] == 1);
  CHECK(image["n_test"] == 2);
  CHECK(image["files"].size() == 6);

  const auto& pathfinder = rows.at("pathfinder");
  CHECK(pathfinder["source"] == "files");
  CHECK(pathfinder["path"] == pf_dir);
  CHECK(pathfinder["n_train"] == 8);
  CHECK(pathfinder["n_val"] == 1);
  CHECK(pathfinder["n_test"] == 1);
  REQUIRE(pathfinder["files"].size() == 1);
  CHECK(pathfinder["files"][0]["checksum"] == file_checksum(pf_dir + "/metadata/0.npy"));

  // No pathfinder128 in the folder: Path-X says so and falls back to its generator.
  const auto& pathx = rows.at("pathx");
  CHECK(pathx["source"] == "generated");
  CHECK_THAT(pathx["reason"].get<std::string>(),
             Contains("no pathfinder128/curv_contour_length_14 under") && Contains(dir.path));
  CHECK(pathx["n_train"] == 160000);
  CHECK(pathx["cached"] == false);

  // The second time, the parsed IMDB comes from the cache.
  rows = status_rows(run_lra(args));
  CHECK(rows.at("text")["details"]["cache"]["status"] == "reused");
  CHECK(rows.at("image")["details"]["cache"]["status"] == "reused");

  // The archives are found as well as the folders.
  fs::remove_all(root / "aclImdb");
  TempDir src("data-imdb-src");
  write_imdb_folder(src.path);
  std::vector<std::pair<std::string, std::string>> members;
  for (const auto& e : fs::recursive_directory_iterator(src.path))
    if (e.is_regular_file())
      members.emplace_back(fs::relative(e.path(), src.path).string(), read_file(e.path().string()));
  write_tar_gz((root / "aclImdb_v1.tar.gz").string(), members);
  rows = status_rows(run_lra(args + " --task text"));
  CHECK(rows.at("text")["dataset"] == "IMDB (aclImdb_v1.tar.gz)");
  CHECK_THAT(rows.at("text")["reason"].get<std::string>(), Contains("found aclImdb_v1.tar.gz in " + dir.path));
  CHECK(rows.at("text")["n_train"] == 4);

  r = run_lra(fmt::format("data status --preset paper --data-dir {} --cache-dir {}", dir.path, cache.path));
  CHECK(r.rc == 0);
  CHECK_THAT(r.out, Contains(listops_dir.string()) && Contains("sha256:"));
}

TEST_CASE("data: listops and pathfinder fall back to their generators when --data-dir has nothing for them",
          "[data]") {
  TempDir empty("data-empty"), cache("data-cache");
  DataOptions opt;
  opt.data_dir = empty.path;
  opt.cache_dir = cache.path;
  opt.n_train = 8;
  opt.n_val = 1;
  opt.n_test = 1;
  opt.quiet = true;
  const TaskData lo = find_task("listops").load(opt);
  CHECK(lo.info.source == "generated");
  CHECK(lo.train.size() == 8);
  CHECK_THAT(lo.info.generator["reason"].get<std::string>(),
             Contains("no ListOps files under") && Contains(empty.path) &&
                 Contains((fs::path(empty.path) / "lra_release" / "lra_release" / "listops-1000").string()));
  const TaskData pf = find_task("pathfinder").load(opt);
  CHECK(pf.info.source == "generated");
  CHECK(pf.train.size() == 8);
  CHECK_THAT(pf.info.generator["reason"].get<std::string>(),
             Contains("no pathfinder32/curv_contour_length_14 under") &&
                 Contains((fs::path(empty.path) / "pathfinder32" / "curv_contour_length_14").string()));

  // The fallback is said on stderr even with --quiet, naming the folders looked at.
  for (const char* task : {"listops", "pathfinder"}) {
    const CliResult r = run_lra(fmt::format(
        "run --task {} --data-dir {} --cache-dir {} --out {}/runs --steps 1 --threads 1 -q --set n_train=8 "
        "--set n_val=1 --set n_test=1 --set emb_dim=8 --set qkv_dim=8 --set mlp_dim=8 --set num_heads=1 "
        "--set num_layers=1 --set batch_size=4 --set warmup=1",
        task, empty.path, cache.path, empty.path));
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK_THAT(r.err, Contains(std::string(task) + ": no ") && Contains(empty.path) && Contains("instead"));
    const auto rec = nlohmann::json::parse(read_file(r.out.substr(0, r.out.find('\n'))));
    CHECK(rec["dataset"]["source"] == "generated");
    CHECK_THAT(rec["dataset"]["generator"]["reason"].get<std::string>(), Contains(empty.path));
  }

  // A folder that does not exist is a mistake, not a reason to fall back.
  opt.data_dir = empty / "nowhere";
  CHECK_THROWS_WITH(find_task("listops").load(opt), Contains("nowhere") && Contains("does not exist"));
  CHECK_THROWS_WITH(find_task("text").data_status(opt), Contains("does not exist"));
  const CliResult r = run_lra(fmt::format("data status --data-dir {}/nowhere", empty.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("nowhere") && Contains("does not exist"));
}

TEST_CASE("data: a broken layout is an error naming the file", "[data]") {
  TempDir dir("data-broken"), cache("data-cache");
  const fs::path listops_dir = fs::path(dir.path) / "listops-1000";
  const TaskData lo = listops::generate(5, {6, 2, 2});
  fs::create_directories(listops_dir);
  listops::write_tsv((listops_dir / "basic_train.tsv").string(), lo.train);
  DataOptions opt;
  opt.data_dir = dir.path;
  opt.cache_dir = cache.path;
  opt.quiet = true;
  CHECK_THROWS_WITH(find_task("listops").load(opt), Contains("no basic_val.tsv") && Contains(listops_dir.string()));
  CHECK_THROWS_WITH(find_task("listops").data_status(opt), Contains("no basic_val.tsv"));
  CliResult r =
      run_lra(fmt::format("data status --json --task listops --data-dir {} --cache-dir {}", dir.path, cache.path));
  CHECK(r.rc == 1);
  CHECK_THAT(status_rows(r).at("listops")["error"].get<std::string>(), Contains("basic_val.tsv"));

  // A malformed file: status names it, as load() does.
  write_text(listops_dir / "basic_val.tsv", "Source,Target\n( [MAX 1 ] )\t1\n");
  listops::write_tsv((listops_dir / "basic_test.tsv").string(), lo.test);
  CHECK_THROWS_WITH(find_task("listops").data_status(opt),
                    Contains((listops_dir / "basic_val.tsv").string()) && Contains("header"));
  CHECK_THROWS_WITH(find_task("listops").load(opt), Contains((listops_dir / "basic_val.tsv").string()));
  r = run_lra(fmt::format("data status --task listops --data-dir {} --cache-dir {}", dir.path, cache.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.out, Contains("error") && Contains("basic_val.tsv"));

  // Pathfinder: metadata that lists a missing image.
  const pathfinder::Dataset pf = pathfinder::generate(3, pathfinder::params_for(32, 14), {8, 1, 1});
  const std::string pf_dir = pathfinder::write_released_layout(pf, dir.path);
  fs::remove(fs::path(pf_dir) / "imgs/0/sample_3.png");
  CHECK_THROWS_WITH(find_task("pathfinder").data_status(opt), Contains("sample_3.png") && Contains("0.npy"));
  CHECK_THROWS_WITH(find_task("pathfinder").load(opt), Contains("sample_3.png"));
}

TEST_CASE("data fetch: a download, a resumed one, and only the needed release folders extracted", "[data]") {
  TempDir mirror("data-mirror"), dir("data-fetch"), dir2("data-fetch-resume");
  const TaskData lo = listops::generate(7, {10, 3, 3});
  const std::string release = make_release(mirror.path, lo);
  const std::string bytes = read_file(release);
  const std::string url = "file://" + mirror.path + "/";

  CliResult r = run_lra(fmt::format("data fetch listops --data-dir {} --mirror {}", dir.path, url));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(read_file(dir / "lra_release.gz") == bytes);
  const fs::path extracted = fs::path(dir.path) / "lra_release" / "lra_release";
  CHECK(fs::is_regular_file(extracted / "listops-1000" / "basic_train.tsv"));
  CHECK_FALSE(fs::exists(extracted / "tsv_data"));
  CHECK_FALSE(fs::exists(extracted / "pathfinder32"));
  CHECK_FALSE(fs::exists(extracted / "pathfinder64"));
  CHECK_FALSE(fs::exists(extracted / "README"));
  CHECK_FALSE(leftovers(dir.path));
  CHECK_THAT(r.out, Contains("extracted " + (extracted / "listops-1000").string()) &&
                        Contains("lra data status --data-dir " + dir.path));
  CHECK_THAT(r.err, Contains("lra_release.gz"));  // the progress line
  CHECK(same(listops::read_tsv((extracted / "listops-1000" / "basic_train.tsv").string()), lo.train));
  CHECK(same(listops::read_tsv((extracted / "listops-1000" / "basic_test.tsv").string()), lo.test));
  auto rows = status_rows(run_lra(fmt::format("data status --json --task listops --data-dir {}", dir.path)));
  CHECK(rows.at("listops")["source"] == "files");
  CHECK(rows.at("listops")["n_train"] == 10);

  // Again: nothing to do. Another task of the same archive: no download, its folder extracted.
  r = run_lra(fmt::format("data fetch listops --data-dir {} --mirror {}", dir.path, url));
  CHECK(r.rc == 0);
  CHECK_THAT(r.out, Contains("already extracted"));
  r = run_lra(fmt::format("data fetch retrieval --data-dir {} --mirror file:///nonexistent/", dir.path));
  INFO(r.err);
  CHECK(r.rc == 0);
  CHECK_THAT(r.out, Contains("already present"));
  CHECK(read_file((extracted / "tsv_data" / "new_aan_pairs.train.tsv").string()) == "1\ta\tb\tdoc one\tdoc two\n");
  CHECK_FALSE(fs::exists(extracted / "pathfinder32"));

  // Resume: a .part with the first half of the bytes is continued, and the result is the source.
  write_text(fs::path(dir2.path) / "lra_release.gz.part", bytes.substr(0, bytes.size() / 2));
  r = run_lra(fmt::format("data fetch pathfinder --data-dir {} --mirror {}", dir2.path, url));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK_THAT(r.err, Contains(fmt::format("resuming the partial download '{}' at byte {}",
                                         dir2 / "lra_release.gz.part", bytes.size() / 2)));
  CHECK(read_file(dir2 / "lra_release.gz") == bytes);
  CHECK(fs::is_regular_file(fs::path(dir2.path) / "lra_release/lra_release/pathfinder32/curv_baseline/metadata/0.npy"));
  CHECK_FALSE(fs::exists(fs::path(dir2.path) / "lra_release/lra_release/listops-1000"));
  CHECK_FALSE(leftovers(dir2.path));

  // A .part longer than the file cannot be continued: the download starts over.
  fs::remove_all(dir2.path);
  write_text(fs::path(dir2.path) / "lra_release.gz.part", bytes + "extra bytes");
  r = run_lra(fmt::format("data fetch listops --data-dir {} --mirror {}", dir2.path, url));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK_THAT(r.err, Contains("downloading from the start"));
  CHECK(read_file(dir2 / "lra_release.gz") == bytes);

  // An archive without a needed folder is not the release; nothing is left half-extracted.
  fs::remove_all(dir2.path);
  fs::create_directories(dir2.path);
  write_tar_gz(dir2 / "lra_release.gz", {{"lra_release/README", "x"}});
  r = run_lra(fmt::format("data fetch pathx --data-dir {}", dir2.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("no file under lra_release/pathfinder128/"));
  CHECK_FALSE(fs::exists(fs::path(dir2.path) / "lra_release"));
  CHECK_FALSE(leftovers(dir2.path));
}

TEST_CASE("data fetch: a server that ignores the range starts over, and HTTP errors are named", "[data]") {
  TempDir mirror("data-mirror"), dir("data-fetch-http");
  const TaskData lo = listops::generate(7, {10, 3, 3});
  const std::string bytes = read_file(make_release(mirror.path, lo));
  TinyHttpServer server({{"lra_release.gz", bytes}});
  write_text(fs::path(dir.path) / "lra_release.gz.part", bytes.substr(0, bytes.size() / 3));
  CliResult r = run_lra(fmt::format("data fetch listops --data-dir {} --mirror {}", dir.path, server.url()));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK_THAT(r.err, Contains("did not continue") && Contains("downloading from the start"));
  CHECK(read_file(dir / "lra_release.gz") == bytes);
  CHECK(server.requests() == 2);
  CHECK_FALSE(leftovers(dir.path));

  r = run_lra(fmt::format("data fetch text --data-dir {} --mirror {}missing/", dir.path, server.url()));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains(server.url() + "missing/aclImdb_v1.tar.gz") && Contains("HTTP status 404 (Not Found)") &&
                        Contains(dir / "aclImdb_v1.tar.gz"));
  CHECK_FALSE(fs::exists(dir / "aclImdb_v1.tar.gz"));
  CHECK_FALSE(fs::exists(dir / "aclImdb_v1.tar.gz.part"));
}

TEST_CASE("data fetch: an MD5 mismatch keeps nothing under the final name", "[data]") {
  TempDir mirror("data-mirror"), dir("data-fetch-md5");
  const std::string fake = (fs::path(mirror.path) / "aclImdb_v1.tar.gz").string();
  write_file_atomic(fake, "this is not IMDB\n");
  const std::string fake_md5 = md5_file(fake);
  CHECK(fake_md5 == "77be78738dae4f46d3ad0054f4e61c23");
  CliResult r = run_lra(fmt::format("data fetch text --data-dir {} --mirror file://{}", dir.path, mirror.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("MD5 mismatch") && Contains("expected 7c2ac02c03563afcf9b574c7e56c153a") &&
                        Contains("got " + fake_md5) && Contains("removed") && Contains(dir / "aclImdb_v1.tar.gz.part"));
  CHECK_FALSE(fs::exists(dir / "aclImdb_v1.tar.gz"));
  CHECK_FALSE(fs::exists(dir / "aclImdb_v1.tar.gz.part"));

  // A file already in place is checked, and left alone when it does not match.
  write_file_atomic(dir / "aclImdb_v1.tar.gz", "this is not IMDB\n");
  r = run_lra(fmt::format("data fetch text --data-dir {} --mirror file://{}", dir.path, mirror.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("already there") && Contains(fake_md5));
  CHECK(fs::exists(dir / "aclImdb_v1.tar.gz"));
}

TEST_CASE("data fetch: without network, the error names the URL and where to put the file", "[data]") {
  TempDir dir("data-fetch-offline");
  CliResult r = run_lra(fmt::format("data fetch text --data-dir {} --mirror http://127.0.0.1:9/", dir.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("http://127.0.0.1:9/aclImdb_v1.tar.gz") && Contains("curl error") &&
                        Contains(dir / "aclImdb_v1.tar.gz") && Contains("lra data status"));
  CHECK_FALSE(leftovers(dir.path));
  r = run_lra(fmt::format("data fetch pathx --data-dir {} --mirror http://127.0.0.1:9", dir.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("http://127.0.0.1:9/lra_release.gz") && Contains(dir / "lra_release.gz") &&
                        Contains("lra data fetch pathx --data-dir " + dir.path));
  r = run_lra("data fetch text");
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("--data-dir"));
  r = run_lra(fmt::format("data fetch nosuch --data-dir {}", dir.path));
  CHECK(r.rc != 0);
}

TEST_CASE("data generate: ListOps and Pathfinder in the released layout, read back by the tasks' readers", "[data]") {
  TempDir dir("data-generate");
  CliResult r = run_lra(fmt::format("data generate listops --out {} --size 50 --seed 4 -q", dir.path));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const TaskData lo = listops::generate(4, {48, 1, 1});
  const fs::path listops_dir = fs::path(dir.path) / "listops-1000";
  CHECK(same(listops::read_tsv((listops_dir / "basic_train.tsv").string()), lo.train));
  CHECK(same(listops::read_tsv((listops_dir / "basic_val.tsv").string()), lo.val));
  CHECK(same(listops::read_tsv((listops_dir / "basic_test.tsv").string()), lo.test));
  CHECK_THAT(r.out, Contains("lra run --task listops --data-dir " + dir.path));
  CHECK_FALSE(leftovers(dir.path));
  r = run_lra(fmt::format("data generate listops --out {} --size 50 -q", dir.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("already exists") && Contains(listops_dir.string()));

  r = run_lra(fmt::format("data generate pathfinder --out {} --size 20 --seed 2 --set difficulty=easy -q", dir.path));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  const pathfinder::Params p = pathfinder::params_for(32, 6);
  const pathfinder::Dataset pf = pathfinder::generate(2, p, {16, 2, 2});
  std::vector<std::string> metadata;
  const pathfinder::Dataset back =
      pathfinder::read_released((fs::path(dir.path) / "pathfinder32" / "curv_baseline").string(), p, 0, 0, 0, metadata);
  CHECK(same(back.train, pf.train));
  CHECK(same(back.val, pf.val));
  CHECK(same(back.test, pf.test));
  CHECK_THAT(r.out, Contains("lra run --task pathfinder --data-dir " + dir.path + " --set difficulty=easy"));

  // `lra data status` reads what was written.
  auto rows = status_rows(run_lra(fmt::format("data status --json --preset paper --data-dir {} --task pathfinder "
                                              "--set difficulty=easy",
                                              dir.path)));
  CHECK(rows.at("pathfinder")["source"] == "files");
  CHECK(rows.at("pathfinder")["n_train"] == 16);

  r = run_lra(fmt::format("data generate text --out {}", dir.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("official") && Contains("stand-in"));
  r = run_lra(fmt::format("data generate image --out {}", dir.path));
  CHECK_THAT(r.err, Contains("Fashion-MNIST"));
  r = run_lra(fmt::format("data generate retrieval --out {}", dir.path));
  CHECK_THAT(r.err, Contains("lra data fetch retrieval"));
  r = run_lra(fmt::format("data generate nosuch --out {}", dir.path));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("valid tasks"));
  r = run_lra(fmt::format("data generate pathfinder --out {} --set colour=red", dir.path));
  CHECK_THAT(r.err, Contains("no option 'colour'"));
  r = run_lra(fmt::format("data generate listops --out {} --size 2", dir.path));
  CHECK_THAT(r.err, Contains("too small"));
}

TEST_CASE("data show: one example as the model sees it, with the file and line it came from", "[data][show]") {
  TempDir dir("data-show"), cache("data-show-cache");
  const fs::path root(dir.path);
  const fs::path listops_dir = root / "lra_release" / "lra_release" / "listops-1000";
  const TaskData lo = write_fixture_folder(root, listops_dir);
  const std::string common = fmt::format("--preset paper --data-dir {} --cache-dir {}", dir.path, cache.path);

  // ListOps: test example 2 is line 4 of basic_test.tsv (after the header), which holds its tree.
  CliResult r = run_lra(fmt::format("data show listops --split test --index 2 --json {}", common));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  nlohmann::json j = nlohmann::json::parse(r.out);
  const fs::path test_tsv = listops_dir / "basic_test.tsv";
  CHECK(j["origin"] == test_tsv.string() + ", line 4");
  CHECK(j["label"] == lo.test.labels[2]);
  const std::vector<uint16_t> ids(lo.test.tokens.begin() + static_cast<std::ptrdiff_t>(lo.test.offsets[2]),
                                  lo.test.tokens.begin() + static_cast<std::ptrdiff_t>(lo.test.offsets[3]));
  CHECK(j["documents"][0]["ids"].get<std::vector<uint16_t>>() == ids);
  std::string names;
  for (uint16_t id : ids) names += (names.empty() ? "" : " ") + std::string(listops::token_name(id));
  CHECK(j["documents"][0]["text"] == names);
  const std::string file = read_file(test_tsv.string());
  size_t at = 0;
  for (int line = 1; line < 4; ++line) at = file.find('\n', at) + 1;
  CHECK(file.compare(at, file.find('\t', at) - at, listops::to_source(ids)) == 0);

  // IMDB: each review is a file; the text is its bytes. The second time the parse cache gives the same.
  for (int pass = 0; pass < 2; ++pass) {
    r = run_lra(fmt::format("data show text --split train --index 3 --json {}", common));
    INFO(r.err);
    REQUIRE(r.rc == 0);
    j = nlohmann::json::parse(r.out);
    const std::string origin = j["origin"];
    const size_t colon = origin.find(": ");
    REQUIRE(colon != std::string::npos);
    CHECK(j["documents"][0]["text"] == read_file(origin.substr(0, colon) + "/" + origin.substr(colon + 2)));
    CHECK(j["label"] == (origin.find("/pos/") != std::string::npos ? 1 : 0));
  }

  // CIFAR-10: record 1 of test_batch.bin, drawn in text and written as a PNG.
  const std::string png = (fs::path(cache.path) / "example.png").string();
  r = run_lra(fmt::format("data show image --index 1 --png {} {}", png, common));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK_THAT(r.out, Contains("cifar-10-batches-bin/test_batch.bin, record 1") && Contains("image:   32x32") &&
                        Contains("label:   1"));
  CHECK(read_file(png).substr(1, 3) == "PNG");

  // Generated data names the generator's file and line, whether generated now or read from its cache.
  for (int pass = 0; pass < 2; ++pass) {
    r = run_lra(fmt::format("data show listops --split val --index 1 --json --cache-dir {} --set n_train=8 "
                            "--set n_val=4 --set n_test=4",
                            cache.path));
    INFO(r.err);
    REQUIRE(r.rc == 0);
    j = nlohmann::json::parse(r.out);
    CHECK_THAT(j["origin"].get<std::string>(), Contains(cache.path) && Contains("basic_val.tsv, line 3"));
  }
  // Pairs show both documents; a stand-in names its generator.
  r = run_lra(fmt::format("data show retrieval --cache-dir {} --set n_train=2 --set n_val=2 --set n_test=2",
                          cache.path));
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK_THAT(r.out, Contains("document 1: ") && Contains("document 2: ") && Contains("stand-in generator") &&
                        Contains(", example 0"));

  r = run_lra(fmt::format("data show listops --split test --index 4 {}", common));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("--index 4") && Contains("holds 4 examples (0..3)"));
  r = run_lra(fmt::format("data show listops --png {}/x.png {}", cache.path, common));
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Contains("not an image task"));
}
