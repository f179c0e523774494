#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/check.h"
#include "core/files.h"
#include "tasks/listops/listops.h"
#include "tasks/task.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace lra;
using namespace lra::listops;
using lra::test::TempDir;
using Catch::Contains;

namespace {

// An evaluator independent of the library: it reads the parenthesised `Source` string, where every
// `( X Y )` applies the partial operator X to one more argument Y, or completes it when Y is `]`.
struct Item {
  bool partial = false;
  std::string op;
  std::vector<int> args;
  int value = 0;
};

int reference_apply(const std::string& op, std::vector<int> a) {
  REQUIRE_FALSE(a.empty());
  if (op == "[MIN") return *std::min_element(a.begin(), a.end());
  if (op == "[MAX") return *std::max_element(a.begin(), a.end());
  if (op == "[SM") {
    int s = 0;
    for (int v : a) s += v;
    return s % 10;
  }
  REQUIRE(op == "[MED");
  std::sort(a.begin(), a.end());
  const size_t k = a.size();
  const double median = k % 2 == 1 ? a[k / 2] : (a[k / 2 - 1] + a[k / 2]) / 2.0;
  return static_cast<int>(median);  // int(np.median(args))
}

int reference_eval(const std::string& source) {
  std::istringstream in(source);
  std::vector<Item> stack;
  std::vector<size_t> marks;
  std::string tok;
  while (in >> tok) {
    if (tok == "(") {
      marks.push_back(stack.size());
    } else if (tok == ")") {
      REQUIRE(!marks.empty());
      REQUIRE(stack.size() == marks.back() + 2);
      marks.pop_back();
      Item y = stack.back();
      stack.pop_back();
      Item x = stack.back();
      stack.pop_back();
      REQUIRE(x.partial);
      if (y.op == "]") {
        stack.push_back(Item{false, "", {}, reference_apply(x.op, x.args)});
      } else {
        REQUIRE(!y.partial);
        x.args.push_back(y.value);
        stack.push_back(x);
      }
    } else if (tok == "]") {
      stack.push_back(Item{false, "]", {}, 0});
    } else if (tok[0] == '[') {
      stack.push_back(Item{true, tok, {}, 0});
    } else {
      REQUIRE(tok.size() == 1);
      REQUIRE(std::isdigit(static_cast<unsigned char>(tok[0])));
      stack.push_back(Item{false, "", {}, tok[0] - '0'});
    }
  }
  REQUIRE(marks.empty());
  REQUIRE(stack.size() == 1);
  REQUIRE_FALSE(stack[0].partial);
  return stack[0].value;
}

size_t count_tokens_without_parens(const std::string& source) {
  std::istringstream in(source);
  std::string tok;
  size_t n = 0;
  while (in >> tok) n += (tok != "(" && tok != ")");
  return n;
}

std::vector<uint16_t> example(const Split& s, size_t i) {
  const auto b = s.tokens.begin() + static_cast<std::ptrdiff_t>(s.offsets[i]);
  return {b, b + s.length(i)};
}

bool same(const Split& a, const Split& b) {
  return a.tokens == b.tokens && a.offsets == b.offsets && a.labels == b.labels;
}

bool is_prefix(const Split& small, const Split& large) {
  if (small.size() > large.size()) return false;
  for (size_t i = 0; i < small.size(); ++i)
    if (example(small, i) != example(large, i) || small.labels[i] != large.labels[i]) return false;
  return true;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

constexpr SplitSizes kSmall{200, 40, 40};

}  // namespace

TEST_CASE("listops: the worked example and hand-written cases", "[listops]") {
  const std::vector<uint16_t> worked = tokenize("[MAX 2 9 [MIN 4 7 ] 0 ]");
  CHECK(to_source(worked) == "( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )");
  CHECK(evaluate(worked) == 9);
  CHECK(reference_eval(to_source(worked)) == 9);

  const std::vector<std::pair<std::string, int>> cases = {
      {"[MED 3 8 ]", 5},
      {"[MED 1 2 3 4 ]", 2},
      {"[MED 9 1 5 ]", 5},
      {"[MED 0 9 ]", 4},
      {"[SM 7 8 9 ]", 4},
      {"[MIN 5 [MAX 1 2 ] 7 ]", 2},
      {"[SM [MED 3 8 ] [MIN 9 6 ] 0 ]", 1},
      {"[MAX [SM 9 9 ] [MIN 1 0 ] ]", 8},
      {"7", 7},
  };
  for (const auto& [prefix, value] : cases) {
    INFO(prefix);
    const std::vector<uint16_t> ids = tokenize(prefix);
    CHECK(evaluate(ids) == value);
    CHECK(reference_eval(to_source(ids)) == value);
    CHECK(tokenize(to_source(ids)) == ids);
  }
  CHECK(to_source(tokenize("[MED 3 8 ]")) == "( ( ( [MED 3 ) 8 ) ] )");
  CHECK_THROWS_AS(evaluate(tokenize("[MIN 1 2")), Error);
  CHECK_THROWS_AS(evaluate(tokenize("[MIN 1 2 ] 3")), Error);
}

TEST_CASE("listops: the tokeniser maps LRA's 15 tokens onto 1..15", "[listops]") {
  const std::vector<std::string> vocab = {"[MIN", "[MAX", "[MED", "[SM", "]", "0", "1", "2",
                                          "3",    "4",    "5",    "6",   "7", "8", "9"};
  std::set<uint16_t> ids;
  for (const std::string& t : vocab) {
    const uint16_t id = token_id(t);
    CHECK(id >= 1);
    CHECK(id <= 15);
    CHECK(token_name(id) == t);
    ids.insert(id);
  }
  CHECK(ids.size() == 15);
  CHECK(token_id("[MIN") == 1);
  CHECK(token_id("]") == 5);
  CHECK(token_id("X") == 5);
  CHECK(token_id("0") == 6);
  CHECK(token_id("9") == 15);
  CHECK(token_id("[FIRST") == kUnknown);
  CHECK(token_id("10") == kUnknown);
  CHECK(tokenize("( ( ( [SM 1 ) 2 ) X )") == std::vector<uint16_t>{kSm, 7, 8, kClose});
  // LRA deletes parentheses before splitting, so parentheses glued to a token are dropped too.
  CHECK(tokenize("((([SM 1) 2) ])") == std::vector<uint16_t>{kSm, 7, 8, kClose});
  CHECK_THROWS_WITH(tokenize("( [SM 1 FOO ] )"), Contains("unknown token 'FOO'"));
  CHECK_THROWS_WITH(tokenize("( ( [SM 1 ) ] ) )"), Contains("unbalanced"));
  CHECK_THROWS_WITH(tokenize("( ( ( [SM 1 ) ] )"), Contains("unbalanced"));
  CHECK_THROWS_WITH(tokenize("( )"), Contains("empty Source"));
}

TEST_CASE("listops: stopping a tree early changes no accepted tree", "[listops]") {
  GeneratorConfig unbounded;
  unbounded.max_length = 1 << 20;
  const GeneratorConfig lra;
  std::vector<uint16_t> a, b;
  int aborted = 0;
  for (uint64_t i = 0; i < 2000; ++i) {
    Rng ra(11, i), rb(11, i);
    const bool complete = sample_tree(ra, lra, a);
    REQUIRE(sample_tree(rb, unbounded, b));
    if (b.size() < 2000) {
      REQUIRE(complete);
      REQUIRE(a == b);
    } else {
      REQUIRE_FALSE(complete);
      ++aborted;
    }
  }
  CHECK(aborted > 0);
}

TEST_CASE("listops: the generator is deterministic per seed and its splits are prefix-stable",
          "[listops]") {
  const TaskData a = generate(7, kSmall);
  CHECK(a.train.size() == 200);
  CHECK(a.val.size() == 40);
  CHECK(a.test.size() == 40);
  const TaskData b = generate(7, kSmall);
  CHECK(same(a.train, b.train));
  CHECK(same(a.val, b.val));
  CHECK(same(a.test, b.test));
  TempDir dir("listops");
  write_tsv(dir / "a.tsv", a.train);
  write_tsv(dir / "b.tsv", b.train);
  CHECK(read_file(dir / "a.tsv") == read_file(dir / "b.tsv"));

  const TaskData c = generate(8, kSmall);
  CHECK_FALSE(same(a.train, c.train));
  CHECK_FALSE(same(a.val, c.val));

  // More (or fewer) training examples leave val and test alone and extend (or cut) train.
  const TaskData more = generate(7, {500, 40, 40});
  CHECK(same(a.val, more.val));
  CHECK(same(a.test, more.test));
  CHECK(is_prefix(a.train, more.train));
  const TaskData fewer = generate(7, {50, 40, 40});
  CHECK(is_prefix(fewer.train, a.train));
  CHECK(same(a.val, fewer.val));
  // Val is drawn first, so a run with only a val split sees the same val.
  CHECK(same(generate(7, {0, 40, 0}).val, a.val));

  // The thread count changes nothing.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const TaskData one = generate(7, kSmall);
  omp_set_num_threads(3);
  const TaskData three = generate(7, kSmall);
  omp_set_num_threads(threads);
  CHECK(same(one.train, a.train));
  CHECK(same(three.train, a.train));
  CHECK(same(three.test, a.test));
}

TEST_CASE("listops: a generator that cannot reach the length bounds stops with an error",
          "[listops]") {
  GeneratorConfig shallow;
  shallow.max_depth = 2;  // at most 12 tokens
  CHECK_THROWS_WITH(generate(1, {1, 0, 0}, shallow),
                    Contains("without a new one of length in (500, 2000)"));
}

TEST_CASE("listops: generated examples respect the bounds and their labels", "[listops]") {
  const TaskData d = generate(3, kSmall);
  std::set<std::vector<uint16_t>> unique;
  size_t n = 0;
  for (const Split* s : {&d.train, &d.val, &d.test}) {
    for (size_t i = 0; i < s->size(); ++i) {
      const std::vector<uint16_t> ids = example(*s, i);
      const int len = s->length(i);
      REQUIRE(len > 500);
      REQUIRE(len < 2000);
      const std::string source = to_source(ids);
      REQUIRE(count_tokens_without_parens(source) == static_cast<size_t>(len));
      REQUIRE(reference_eval(source) == s->labels[i]);
      REQUIRE(tokenize(source) == ids);
      unique.insert(ids);
      ++n;
    }
  }
  CHECK(unique.size() == n);
}

TEST_CASE("listops: lengths and labels are in the reference's range", "[listops]") {
  const TaskData d = generate(0, {600, 0, 0});
  double sum = 0;
  std::vector<int> counts(10, 0);
  for (size_t i = 0; i < d.train.size(); ++i) {
    sum += d.train.length(i);
    ++counts[static_cast<size_t>(d.train.labels[i])];
  }
  // The reference estimates a mean of about 1048; LRA's distribution gives 1035 exactly (by dynamic
  // programming over lengths). 600 examples put the sample mean within about 20 of it.
  const double mean = sum / static_cast<double>(d.train.size());
  CHECK(mean > 900);
  CHECK(mean < 1200);
  for (int label = 0; label < 10; ++label) {
    INFO("label " << label);
    CHECK(counts[static_cast<size_t>(label)] > 0);
  }
}

TEST_CASE("listops: the reader round-trips the writer's files", "[listops]") {
  TempDir dir("listops");
  const TaskData d = generate(5, {30, 10, 10});
  const std::string path = dir / "basic_train.tsv";
  write_tsv(path, d.train);
  const std::string text = read_file(path);
  CHECK(text.rfind("Source\tTarget\r\n", 0) == 0);
  CHECK(text.size() >= 2);
  CHECK(text.substr(text.size() - 2) == "\r\n");
  CHECK(std::count(text.begin(), text.end(), '\n') == std::count(text.begin(), text.end(), '\r'));
  CHECK(same(read_tsv(path), d.train));

  SECTION("LF endings, a BOM and a blank final line") {
    std::string lf;
    for (char ch : text)
      if (ch != '\r') lf += ch;
    write_text(dir / "lf.tsv", "\xEF\xBB\xBF" + lf + "\n");
    CHECK(same(read_tsv(dir / "lf.tsv"), d.train));
  }
  SECTION("a limit takes the first examples; max_length truncates") {
    const Split first = read_tsv(path, 7);
    CHECK(first.size() == 7);
    CHECK(is_prefix(first, d.train));
    const Split cut = read_tsv(path, 0, 600);
    REQUIRE(cut.size() == d.train.size());
    for (size_t i = 0; i < cut.size(); ++i) {
      std::vector<uint16_t> expected = example(d.train, i);
      expected.resize(std::min<size_t>(expected.size(), 600));
      CHECK(example(cut, i) == expected);
    }
    CHECK_THROWS_WITH(read_tsv(path, 31), Contains("only 30 examples"));
  }
}

TEST_CASE("listops: each malformed line has its own error naming file and line", "[listops]") {
  TempDir dir("listops");
  const std::string good = "( ( ( [MED 3 ) 8 ) ] )\t5\r\n";
  // Line 3 of each file is the bad one, between two good examples.
  auto expect_error = [&](const std::string& name, const std::string& bad_line,
                          const std::string& what) {
    const std::string p = dir / name;
    write_text(p, "Source\tTarget\r\n" + good + bad_line + "\r\n" + good);
    CHECK_THROWS_WITH(read_tsv(p), Contains(p) && Contains("line 3:") && Contains(what));
  };
  expect_error("fields.tsv", "( ( ( [MED 3 ) 8 ) ] )\t5\t1",
               "expected 2 tab-separated fields (Source, Target), found 3");
  expect_error("nofield.tsv", "( ( ( [MED 3 ) 8 ) ] ) 5", "found 1");
  expect_error("nonint.tsv", "( ( ( [MED 3 ) 8 ) ] )\tfive", "Target 'five' is not an integer");
  expect_error("range.tsv", "( ( ( [MED 3 ) 8 ) ] )\t12", "Target 12 is outside 0..9");
  expect_error("negative.tsv", "( ( ( [MED 3 ) 8 ) ] )\t-1", "Target -1 is outside 0..9");
  expect_error("empty.tsv", "\t3", "empty Source");
  expect_error("unknown.tsv", "( ( ( [MEAN 3 ) 8 ) ] )\t5", "unknown token '[MEAN'");
  expect_error("parens.tsv", "( ( ( [MED 3 ) 8 ) ]\t5", "unbalanced parentheses");
  expect_error("blank.tsv", "", "blank line");

  const std::string header = dir / "header.tsv";
  write_text(header, "Target\tSource\r\n" + good);
  CHECK_THROWS_WITH(read_tsv(header),
                    Contains(header) && Contains("line 1:") && Contains("expected the header"));
  const std::string nothing = dir / "nothing.tsv";
  write_text(nothing, "");
  CHECK_THROWS_WITH(read_tsv(nothing),
                    Contains(nothing) && Contains("line 1:") && Contains("empty"));
  const std::string no_examples = dir / "no_examples.tsv";
  write_text(no_examples, "Source\tTarget\r\n");
  CHECK_THROWS_WITH(read_tsv(no_examples), Contains(no_examples) && Contains("no examples"));
  CHECK_THROWS_WITH(read_tsv(dir / "missing.tsv"), Contains("missing.tsv"));
}

TEST_CASE("listops: processes generating one cache folder at once all load it, none removes another's",
          "[listops]") {
  // Workers of one grid start together on one --cache-dir: each generates, and the first to finish puts
  // its folder in place while the others are still writing theirs.
  constexpr int kProcs = 4, kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    TempDir dir("listops-race");
    std::vector<pid_t> kids;
    for (int p = 0; p < kProcs; ++p) {
      const pid_t pid = fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        int rc = 1;
        try {
          DataOptions opt;
          opt.cache_dir = dir.path;
          opt.n_train = 200;
          opt.n_val = 20;
          opt.n_test = 20;
          opt.quiet = true;
          const TaskData d = find_task("listops").load(opt);
          rc = d.train.size() == 200 && d.info.files.size() == 3 ? 0 : 2;
        } catch (...) {
          rc = 3;
        }
        _exit(rc);
      }
      kids.push_back(pid);
    }
    for (pid_t k : kids) {
      int status = 0;
      REQUIRE(waitpid(k, &status, 0) == k);
      INFO("round " << round);
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
    }
  }
}

TEST_CASE("listops: generated data is cached and reused", "[listops]") {
  TempDir dir("listops");
  DataOptions opt;
  opt.cache_dir = dir.path;
  opt.data_seed = 4;
  opt.n_train = 60;
  opt.n_val = 20;
  opt.n_test = 20;
  opt.quiet = true;
  const std::string cache = cache_path(opt);
  CHECK(cache == (fs::path(dir.path) / "listops" / "seed4-train60-val20-test20").string());
  CHECK(cache_path(DataOptions{}).find("seed0-train96000-val2000-test2000") != std::string::npos);

  const TaskData first = find_task("listops").load(opt);
  CHECK(first.info.name == "listops");
  CHECK(first.info.source == "generated");
  CHECK(first.info.generated);
  CHECK(first.info.generator_seed == 4);
  CHECK(first.info.path == cache);
  CHECK(first.info.generator["max_depth"] == 10);
  CHECK(first.info.generator["n_train"] == 60);
  REQUIRE(first.info.files.size() == 3);
  CHECK(first.info.files[0].first == (fs::path(cache) / "basic_train.tsv").string());
  CHECK(first.info.files[0].second == file_checksum(first.info.files[0].first));
  CHECK(first.train.size() == 60);
  CHECK(first.val.size() == 20);
  const TaskData direct = generate(4, {60, 20, 20});
  CHECK(same(first.train, direct.train));
  CHECK(same(first.test, direct.test));
  // Only the finished folder is left behind.
  CHECK(std::distance(fs::directory_iterator(fs::path(dir.path) / "listops"), fs::directory_iterator()) == 1);

  std::vector<fs::file_time_type> mtimes;
  for (const auto& [path, sum] : first.info.files) mtimes.push_back(fs::last_write_time(path));
  const TaskData second = find_task("listops").load(opt);
  for (size_t i = 0; i < 3; ++i)
    CHECK(fs::last_write_time(second.info.files[i].first) == mtimes[i]);
  CHECK(same(first.train, second.train));
  CHECK(same(first.val, second.val));
  CHECK(same(first.test, second.test));
  CHECK(second.info.files == first.info.files);

  // A cache folder with a missing file is regenerated.
  fs::remove(fs::path(cache) / "basic_val.tsv");
  const TaskData third = find_task("listops").load(opt);
  CHECK(same(first.val, third.val));

  opt.max_length = 600;
  const TaskData cut = find_task("listops").load(opt);
  for (size_t i = 0; i < cut.train.size(); ++i)
    CHECK(cut.train.length(i) == std::min(600, first.train.length(i)));
}

TEST_CASE("listops: --data-dir finds the release layouts", "[listops]") {
  TempDir dir("listops");
  const TaskData d = generate(9, {20, 6, 6});
  const fs::path doubled = fs::path(dir.path) / "lra_release" / "lra_release" / "listops-1000";
  fs::create_directories(doubled);
  write_tsv((doubled / "basic_train.tsv").string(), d.train);
  write_tsv((doubled / "basic_val.tsv").string(), d.val);
  write_tsv((doubled / "basic_test.tsv").string(), d.test);
  std::vector<std::string> tried;
  CHECK(locate_data_dir(dir.path, tried) == doubled.string());
  CHECK(locate_data_dir((fs::path(dir.path) / "lra_release").string(), tried) == doubled.string());
  CHECK(locate_data_dir(doubled.parent_path().string(), tried) == doubled.string());
  CHECK(locate_data_dir(doubled.string(), tried) == doubled.string());

  DataOptions opt;
  opt.data_dir = dir.path;
  opt.quiet = true;
  const TaskData loaded = find_task("listops").load(opt);
  CHECK(loaded.info.source == "files");
  CHECK_FALSE(loaded.info.generated);
  CHECK(loaded.info.path == doubled.string());
  REQUIRE(loaded.info.files.size() == 3);
  CHECK(loaded.info.files[2].second == file_checksum((doubled / "basic_test.tsv").string()));
  CHECK(same(loaded.train, d.train));
  CHECK(same(loaded.val, d.val));
  CHECK(same(loaded.test, d.test));

  opt.n_train = 5;
  const TaskData sub = find_task("listops").load(opt);
  CHECK(sub.train.size() == 5);
  CHECK(is_prefix(sub.train, d.train));
  CHECK(same(sub.val, d.val));
  CHECK(sub.info.generator.contains("subsample"));

  TempDir other("listops");
  tried.clear();
  CHECK(locate_data_dir(other.path, tried).empty());
  CHECK(tried == std::vector<std::string>{other.path, (fs::path(other.path) / "listops-1000").string(),
                                          (fs::path(other.path) / "lra_release" / "listops-1000").string(),
                                          (fs::path(other.path) / "lra_release" / "lra_release" / "listops-1000").string()});
  write_tsv(other / "basic_train.tsv", d.train);
  CHECK_THROWS_WITH(locate_data_dir(other.path, tried), Contains("no basic_val.tsv"));
}

TEST_CASE("listops: the task's config and presets", "[listops]") {
  const Task& task = find_task("listops");
  CHECK(task.name() == "listops");
  CHECK(task.shape({}).vocab_size == 17);
  CHECK(task.shape({}).num_classes == 10);
  const nlohmann::json d = task.defaults();
  CHECK(d["max_length"] == 2000);
  CHECK(d["emb_dim"] == 512);
  CHECK(d["num_layers"] == 4);
  CHECK(d["mlp_dim"] == 1024);
  CHECK(d["learning_rate"] == 0.05);
  CHECK(d["adam_eps"] == 1e-9);
  CHECK(d["classifier_pool"] == "CLS");
  CHECK(d["learn_pos_emb"] == false);
  CHECK(d.size() == 21);
  const auto presets = task.presets();
  REQUIRE(presets.count("paper") == 1);
  REQUIRE(presets.count("cpu") == 1);
  CHECK(presets.at("paper").empty());
  for (const auto& [key, value] : presets.at("cpu").items()) {
    INFO(key);
    CHECK(d.contains(key));
  }
}
