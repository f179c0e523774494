// Retrieval task tests: AAN lines and files in the release's format (label as LRA parses it, 10,000-byte
// cut, CRLF, errors naming the file and line), finding the files, the parsed-data cache, pairs in
// batches, the stand-in's determinism and topic labels, and the task's config.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "core/files.h"
#include "tasks/retrieval/retrieval.h"
#include "tasks/task.h"
#include "test_util.h"
#include "train/config.h"

namespace fs = std::filesystem;
using namespace lra;
using namespace lra::retrieval;
using lra::test::TempDir;
using Catch::Contains;

namespace {

void write_bytes(const std::string& path, const std::string& s) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << s;
}

std::vector<uint16_t> ids_of(const std::string& s) {
  std::vector<uint16_t> out;
  for (unsigned char c : s) out.push_back(static_cast<uint16_t>(c + 1));
  return out;
}

std::vector<uint16_t> doc(const Split& s, size_t d) {
  return {s.tokens.begin() + static_cast<std::ptrdiff_t>(s.offsets[d]),
          s.tokens.begin() + static_cast<std::ptrdiff_t>(s.offsets[d + 1])};
}

// `n` AAN lines: label alternating 1.0 / 0.0 (as the release spells it), ids, and two texts.
std::string aan_lines(int n, const std::string& tag, const std::string& eol = "\n") {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += fmt::format("{}\tP{}-{}\tQ{}-{}\t{} first text {} \"quoted\" {{x}}\t{} second text {}{}", i % 2 == 0 ? "1.0" : "0.0",
                     tag, i, tag, i, tag, i, tag, i, eol);
  return s;
}

// The three files under root/lra_release/lra_release/tsv_data, as the release unpacks.
std::string write_release(const std::string& root, int train, int eval, int test) {
  const std::string dir = root + "/lra_release/lra_release/tsv_data";
  write_bytes(dir + "/" + kFiles[0], aan_lines(train, "tr"));
  write_bytes(dir + "/" + kFiles[1], aan_lines(eval, "ev"));
  write_bytes(dir + "/" + kFiles[2], aan_lines(test, "te", "\r\n"));
  return dir;
}

}  // namespace

TEST_CASE("retrieval: an AAN line is read as LRA's pipeline reads it", "[retrieval]") {
  Split s;
  s.docs = 2;
  REQUIRE(parse_line("1.0\tid1\tid2\tHello \"world\"\tSecond, text\r", 4000, s) == "");
  REQUIRE(parse_line("0\ta\tb\t\xff\x01 z\t", 4000, s) == "");
  CHECK(s.size() == 2);
  CHECK(s.num_docs() == 4);
  CHECK(s.labels == std::vector<int32_t>{1, 0});
  CHECK(doc(s, 0) == ids_of("Hello \"world\""));  // quotes are kept: no quote handling
  CHECK(doc(s, 1) == ids_of("Second, text"));     // the trailing \r of a CRLF line is dropped
  CHECK(doc(s, 2) == std::vector<uint16_t>{256, 2, 33, 123});  // byte 255 -> 256: two-byte ids
  CHECK(doc(s, 3).empty());

  SECTION("texts are cut to 10,000 bytes, then to max_length") {
    Split t;
    t.docs = 2;
    REQUIRE(parse_line("1\ta\tb\t" + std::string(12000, 'x') + "\tshort", 20000, t) == "");
    CHECK(t.length(0) == kTextBytes);
    REQUIRE(parse_line("1\ta\tb\t" + std::string(12000, 'x') + "\tshort", 7, t) == "");
    CHECK(t.length(2) == 7);
    CHECK(t.length(3) == 5);
  }
  SECTION("malformed lines say what is wrong") {
    Split t;
    CHECK_THAT(parse_line("1\ta\tb\tonly four", 10, t), Contains("4 tab-separated field(s); expected 5"));
    CHECK_THAT(parse_line("1\ta\tb\tc\td\te", 10, t), Contains("more than 5"));
    CHECK_THAT(parse_line("yes\ta\tb\tc\td", 10, t), Contains("label 'yes' is not a number"));
    CHECK_THAT(parse_line("2.0\ta\tb\tc\td", 10, t), Contains("not 0 or 1"));
    // Beyond int's range, where the float-to-int cast LRA's pipeline makes would be undefined
    // (fuzz/regressions/aan_tsv).
    CHECK_THAT(parse_line("44444444444444444444444441\ta\tb\tc\td", 10, t), Contains("not 0 or 1"));
    CHECK_THAT(parse_line("-1e300\ta\tb\tc\td", 10, t), Contains("not 0 or 1"));
    CHECK(t.size() == 0);
  }
}

TEST_CASE("retrieval: the release's files are found, read and cached", "[retrieval]") {
  TempDir root("aan"), cache_dir("aan-cache");
  const std::string dir = write_release(root.path, 10, 4, 6);
  std::vector<std::string> tried;
  CHECK(fs::equivalent(find_aan(root.path, tried), dir));
  CHECK(fs::equivalent(find_aan(dir, tried), dir));
  CHECK(find_aan("", tried).empty());

  const Split train = read_tsv(dir + "/" + kFiles[0], 4000);
  CHECK(train.size() == 10);
  CHECK(train.docs == 2);
  CHECK(doc(train, 2) == ids_of("tr first text 1 \"quoted\" {x}"));
  CHECK(doc(train, 3) == ids_of("tr second text 1"));
  CHECK(read_tsv(dir + "/" + kFiles[2], 4000).size() == 6);  // CRLF lines
  CHECK(read_tsv(dir + "/" + kFiles[0], 4000, 3).size() == 3);

  DataOptions opt;
  opt.data_dir = root.path;
  opt.cache_dir = cache_dir.path;
  opt.quiet = true;
  opt.max_length = 12;
  TaskData d = load(opt);
  CHECK(d.info.source == "files");
  CHECK(d.train.size() == 10);
  CHECK(d.val.size() == 4);
  CHECK(d.test.size() == 6);
  CHECK(d.val.labels == std::vector<int32_t>{1, 0, 1, 0});
  CHECK(doc(d.val, 0) == ids_of("ev first tex"));  // cut to max_length = 12
  REQUIRE(d.info.files.size() == 3);
  CHECK(d.info.files[0].second == file_checksum(dir + "/" + kFiles[0]));
  CHECK(d.info.generator["cache"]["status"] == "built");

  SECTION("a second load reuses the cache; changed files or settings rebuild it") {
    TaskData again = load(opt);
    CHECK(again.info.generator["cache"]["status"] == "reused");
    CHECK(again.train.tokens == d.train.tokens);
    CHECK(again.test.labels == d.test.labels);
    write_bytes(dir + "/" + kFiles[1], aan_lines(5, "ev2"));
    TaskData changed = load(opt);
    CHECK(changed.info.generator["cache"]["status"] == "rebuilt");
    CHECK(changed.val.size() == 5);
    opt.max_length = 20;
    CHECK(load(opt).info.generator["cache"]["status"] == "built");
  }
  SECTION("n_train, n_val and n_test take the first pairs of each file") {
    opt.n_train = 3;
    opt.n_val = 2;
    TaskData small = load(opt);
    CHECK(small.train.size() == 3);
    CHECK(small.train.num_docs() == 6);
    CHECK(doc(small.train, 5) == doc(d.train, 5));
    CHECK(small.val.size() == 2);
    CHECK(small.test.size() == 6);
    CHECK(find_task("retrieval").data_status(opt).n_train == 3);
  }
}

TEST_CASE("retrieval: malformed or incomplete AAN copies give errors naming the file", "[retrieval]") {
  TempDir root("aan");
  const std::string dir = write_release(root.path, 3, 2, 2);
  std::vector<std::string> tried;
  SECTION("a bad line names the file and the line") {
    write_bytes(dir + "/" + kFiles[0], aan_lines(2, "tr") + "1\tonly\tthree\n");
    CHECK_THROWS_WITH(read_tsv(dir + "/" + kFiles[0], 100), Contains(kFiles[0]) && Contains(":3:") &&
                                                                   Contains("3 tab-separated field(s)"));
  }
  SECTION("an empty file") {
    write_bytes(dir + "/" + kFiles[2], "");
    CHECK_THROWS_WITH(read_tsv(dir + "/" + kFiles[2], 100), Contains("holds no pairs"));
  }
  SECTION("a missing file next to the train file") {
    fs::remove(dir + "/" + kFiles[1]);
    CHECK_THROWS_WITH(find_aan(root.path, tried), Contains(kFiles[1]));
  }
  SECTION("more pairs asked for than the file holds") {
    CHECK_THROWS_WITH(read_tsv(dir + "/" + kFiles[0], 100, 5), Contains("holds 3 pairs but 5 were asked for"));
  }
}

TEST_CASE("retrieval: pairs become batches of first documents, then second ones", "[retrieval]") {
  Split s;
  s.docs = 2;
  s.add_pair({1, 2, 3}, {4}, 1);
  s.add_pair({5}, {6, 7, 8, 9}, 0);
  s.add_pair({10, 11}, {12, 13}, 1);
  const Batch b = make_batch(s, {2, 0}, 3);
  CHECK(b.B == 2);
  CHECK(b.docs == 2);
  CHECK(b.labels == std::vector<int32_t>{1, 1});
  CHECK(b.offsets == std::vector<int32_t>{0, 2, 5, 7, 8});
  CHECK(b.tokens == std::vector<int32_t>{10, 11, 1, 2, 3, 12, 13, 4});
}

TEST_CASE("retrieval: the stand-in is deterministic and labelled by both whole documents", "[retrieval]") {
  const Split a = standin_split(4, kStandInTrain, 400, 600);
  const Split b = standin_split(4, kStandInTrain, 400, 600);
  CHECK(a.tokens == b.tokens);
  CHECK(a.labels == b.labels);
  CHECK(a.docs == 2);
  CHECK(standin_split(5, kStandInTrain, 50, 600).tokens != standin_split(4, kStandInTrain, 50, 600).tokens);
  const Split prefix = standin_split(4, kStandInTrain, 100, 600);  // a smaller split is a prefix
  CHECK(prefix.labels == std::vector<int32_t>(a.labels.begin(), a.labels.begin() + 100));
  int matches = 0, first_bytes_agree = 0, shared_decoys = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto d1 = doc(a, 2 * i), d2 = doc(a, 2 * i + 1);
    for (const auto& d : {d1, d2}) {
      CHECK(d.size() >= 280);  // max_length / 2 less the word that did not fit
      CHECK(d.size() <= 600);
    }
    const int t1 = standin_topic(d1), t2 = standin_topic(d2);
    REQUIRE(t1 >= 0);
    REQUIRE(t2 >= 0);
    CHECK(a.labels[i] == (t1 == t2 ? 1 : 0));
    matches += a.labels[i];
    // What the first 100 bytes of each document say: their topics agree much less reliably.
    const int h1 = standin_topic({d1.begin(), d1.begin() + 100}), h2 = standin_topic({d2.begin(), d2.begin() + 100});
    first_bytes_agree += (h1 >= 0 && h2 >= 0 && (h1 == h2) == (t1 == t2)) ? 1 : 0;
    // Non-matching pairs often share topic words: the first document's topic is the second's decoy.
    if (t1 != t2) {
      for (const auto& w : standin_topic_words(t1)) {
        const auto ids = ids_of(" " + w + " ");
        if (std::search(d2.begin(), d2.end(), ids.begin(), ids.end()) != d2.end()) {
          ++shared_decoys;
          break;
        }
      }
    }
  }
  CHECK(matches > 160);  // balanced labels
  CHECK(matches < 240);
  CHECK(first_bytes_agree < 300);  // the beginnings decide fewer than 75% of the pairs
  CHECK(shared_decoys > 50);
}

TEST_CASE("retrieval: without AAN the task loads the stand-in and says so", "[retrieval]") {
  TempDir empty("aan");
  DataOptions opt;
  opt.data_dir = empty.path;
  opt.quiet = true;
  opt.max_length = 200;
  opt.n_train = 30;
  opt.n_val = 10;
  opt.n_test = 12;
  const TaskData d = load(opt);
  CHECK(d.info.source == "stand-in");
  CHECK(d.info.generator["reason"].get<std::string>().find("no AAN files under") != std::string::npos);
  CHECK(d.train.size() == 30);
  CHECK(d.val.size() == 10);
  CHECK(d.test.size() == 12);
  CHECK(d.train.num_docs() == 60);
  const DataStatus s = find_task("retrieval").data_status(opt);
  CHECK(s.source == "stand-in");
  CHECK(s.n_train == 30);
  opt.data_dir = empty.path + "/missing";
  CHECK_THROWS_WITH(load(opt), Contains("does not exist"));
}

TEST_CASE("retrieval: the task's config, presets and dual-encoder options", "[retrieval]") {
  const Task& task = find_task("retrieval");
  const nlohmann::json d = task.defaults();
  CHECK(d["max_length"] == 4000);
  CHECK(d["emb_dim"] == 128);
  CHECK(d["num_heads"] == 4);
  CHECK(d["num_layers"] == 4);
  CHECK(d["mlp_dim"] == 512);
  CHECK(d["warmup"] == 8000);
  CHECK(d["num_train_steps"] == 5000);
  CHECK(d["classifier_pool"] == "CLS");
  const nlohmann::json none = nlohmann::json::object();
  const TaskShape shape = task.shape(resolve_task_params(task, none));
  CHECK(shape.vocab_size == 257);
  CHECK(shape.num_classes == 2);
  CHECK(shape.pairs);
  CHECK(shape.interaction == "nli");
  CHECK(task.shape(resolve_task_params(task, {{"interaction", "concat"}})).interaction == "concat");
  CHECK_THROWS_WITH(task.shape({{"interaction", "cross"}}), Contains("nli") && Contains("concat"));
  CHECK_FALSE(find_task("listops").shape(none).pairs);
  // The run config carries the task's shape into the model.
  const RunConfig concat = resolve_config("retrieval", "softmax", "cpu", "", {"interaction=concat"});
  CHECK(concat.model.dual);
  CHECK(concat.model.interaction == Interaction::Concat);
  CHECK(concat.model.vocab_size == 257);
  CHECK(concat.model.num_classes == 2);
  CHECK(resolve_config("retrieval", "softmax", "cpu", "", {}).model.interaction == Interaction::Nli);
  CHECK_FALSE(resolve_config("listops", "softmax", "cpu", "", {}).model.dual);
}
