// Writes the seed corpora (fuzz/corpus/<target>/) from the test fixtures' builders and the project's own
// writers, so that every seed is a file lra writes or reads in the official layouts. Run after a format
// changes (a cache or checkpoint version, a record key):
//   build-fuzz/fuzz/lra_fuzz_corpus fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/files.h"
#include "fuzz/fuzz_util.h"
#include "results/record.h"
#include "tasks/common/archive.h"
#include "tasks/common/cache.h"
#include "tasks/listops/listops.h"
#include "tasks/pathfinder/pathfinder.h"
#include "tests/archive_fixtures.h"
#include "tests/record_fixtures.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace fs = std::filesystem;
using namespace lra;

namespace {

fs::path out_root;
fs::path work;

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  fuzz::write(out_root / target / name, bytes);
}

std::string joined(const std::vector<std::string>& parts) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? std::string(fuzz::kPartSeparator) : "") + parts[i];
  return s;
}

std::string tar_gz(const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string path = (work / "archive.tar.gz").string();
  test::write_tar_gz(path, files);
  return read_file(path);
}

// The same archive uncompressed (read_gzip undoes the gzip filter), so that mutations reach tar headers.
std::string tar(const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string path = (work / "archive.tar.gz").string();
  test::write_tar_gz(path, files);
  return read_gzip(path);
}

void listops_tsv() {
  listops::GeneratorConfig cfg;
  cfg.max_depth = 4;
  cfg.max_args = 3;
  cfg.min_length = 4;
  cfg.max_length = 40;
  const TaskData d = listops::generate(1, {4, 1, 1}, cfg);
  const std::string path = (work / "basic_train.tsv").string();
  listops::write_tsv(path, d.train);
  seed("listops_tsv", "written.tsv", read_file(path));
  seed("listops_tsv", "bom_lf_blank_tail.tsv",
       "\xEF\xBB\xBFSource\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n[MIN 4 [SM 3 8 ] ]\t1\n\n\n");
  seed("listops_tsv", "malformed.tsv", "Source\tTarget\r\n[MED 1 2\t3\r\n\r\n[MIN 1 ]\t12\r\n");
}

void aan_tsv() {
  seed("aan_tsv", "pairs.tsv",
       "1\tP1\tQ1\tthe first text of a pair\tthe second text\n"
       "0.0\tP2\tQ2\tanother \"quoted\" {x} text\t\xC3\xA9t\xC3\xA9\r\n\n"
       "1.0\tP3\tQ3\t\tan empty first text\n");
  seed("aan_tsv", "malformed.tsv", "2\ta\tb\tc\td\nx\ta\tb\tc\n");
}

std::vector<std::pair<std::string, std::string>> imdb_tree() {
  std::vector<std::pair<std::string, std::string>> files;
  for (const char* split : {"train", "test"})
    for (const char* label : {"neg", "pos"})
      files.emplace_back(std::string("aclImdb/") + split + "/" + label + "/0_" + (label[0] == 'p' ? "9" : "2") + ".txt",
                         std::string(label) + " review of " + split + ".<br /><br />It was fine.");
  files.emplace_back("aclImdb/train/pos/1_10.txt", " \t\r\n\xC2\xA0" "Caf\xC3\xA9 \xE2\x9C\x93\n\n");
  files.emplace_back("aclImdb/train/unsup/0_0.txt", "unlabelled, ignored");
  files.emplace_back("./aclImdb/README", "Large Movie Review Dataset v1.0\n");
  return files;
}

void imdb() {
  seed("imdb", "aclImdb_v1.tar.gz", tar_gz(imdb_tree()));
  seed("imdb", "aclImdb_v1.tar", tar(imdb_tree()));
  seed("imdb", "folder_parts", joined({"neg train review", "pos train review <br />", "  neg test\n", "pos test",
                                       "another neg", "\t"}));
}

std::string cifar_record(uint8_t label, uint8_t r, uint8_t g, uint8_t b) {
  return std::string(1, static_cast<char>(label)) + std::string(1024, static_cast<char>(r)) +
         std::string(1024, static_cast<char>(g)) + std::string(1024, static_cast<char>(b));
}

void cifar() {
  const char* const names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                               "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<std::string> parts;
  for (int k = 0; k < 6; ++k) {
    const std::string rec = cifar_record(static_cast<uint8_t>(k), 255, static_cast<uint8_t>(40 * k), 7);
    files.emplace_back(std::string("cifar-10-batches-bin/") + names[k], rec);
    parts.push_back(rec);
  }
  files.emplace_back("cifar-10-batches-bin/batches.meta.txt", "airplane\nautomobile\n");
  seed("cifar", "batch.bin", cifar_record(3, 0, 128, 255) + cifar_record(9, 12, 34, 56));
  seed("cifar", "cifar-10-binary.tar.gz", tar_gz(files));
  seed("cifar", "cifar-10-binary.tar", tar(files));
  seed("cifar", "folder_parts", joined(parts));
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

void idx() {
  auto images = [](uint32_t n) {
    std::string s = be32(0x803) + be32(n) + be32(28) + be32(28);
    for (uint32_t i = 0; i < n * 784; ++i) s += static_cast<char>(i % 3 == 0 ? 0 : (i * 7) % 256);
    return s;
  };
  auto labels = [](uint32_t n) {
    std::string s = be32(0x801) + be32(n);
    for (uint32_t i = 0; i < n; ++i) s += static_cast<char>(i % 10);
    return s;
  };
  auto gz = [](const std::string& bytes) {
    const std::string path = (work / "idx.gz").string();
    test::write_gzip(path, bytes);
    return read_file(path);
  };
  seed("idx", "train_pair_gz", joined({gz(images(2)), gz(labels(2))}));
  seed("idx", "four_files", joined({images(2), labels(2), images(1), labels(1)}));
}

pathfinder::Dataset small_pathfinder() {
  const int64_t* n = fuzz::kPathfinderSplits;
  return pathfinder::generate(fuzz::kPathfinderSeed,
                              pathfinder::params_for(fuzz::kPathfinderResolution, fuzz::kPathfinderContourLength),
                              {n[0], n[1], n[2]});
}

void pathfinder_released() {
  const pathfinder::Dataset d = small_pathfinder();
  const fs::path dir = pathfinder::write_released_layout(d, (work / "released").string());
  std::vector<std::string> parts = {read_file((dir / "metadata" / "0.npy").string())};
  for (int i = 0; i < 5; ++i) parts.push_back(read_file((dir / "imgs" / "0" / ("sample_" + std::to_string(i) + ".png")).string()));
  seed("pathfinder", "released", joined(parts));
  // LRA skips empty images; the last line ends in CRLF.
  parts[0] = "imgs/0 sample_0.png 0 1 1.0 14 4 2 0.5 1 1\nimgs/0 sample_1.png 1 0 1.0 14 4 2 0.5 1 1\r\n";
  parts[2] = "";
  parts.resize(3);
  seed("pathfinder", "empty_image", joined(parts));
}

void data_cache() {
  cache::Entry e;
  e.meta = {{"files", {{"train.tsv", "sha256:00ff"}}}, {"max_length", 4000}};
  Split narrow;
  narrow.add({1, 2, 3}, 0);
  narrow.add({4}, 1);
  narrow.add({}, 1);
  for (int line = 2; line <= 4; ++line) narrow.origins.add("train.tsv", "line", line);
  narrow.zero_is_padding = true;
  Split pairs;
  pairs.docs = 2;
  pairs.add_pair({300, 2}, {1}, 1);
  pairs.add_pair({7}, {257, 256, 5}, 0);
  e.splits = {{"train", narrow}, {"test", pairs}};
  const std::string path = (work / "data.lracache").string();
  cache::write(path, fuzz::kCacheKey, e);
  seed("data_cache", "parsed.lracache", read_file(path));
  pathfinder::write_cache(path, fuzz::kPathfinderSeed, small_pathfinder());
  seed("data_cache", "pathfinder.bin", read_file(path));
}

void checkpoint() {
  const RunConfig c = resolve_config("listops", "softmax", "cpu", "", {});
  const nlohmann::json meta = {{"run_id", "listops_softmax_cpu_seed0_20260101T000000Z"},
                               {"started_at", "2026-01-01T00:00:00Z"},
                               {"config", c.to_json()},
                               {"step", 40},
                               {"curve", nlohmann::json::array({{{"step", 20}, {"loss", 2.2}, {"val_accuracy", 0.2}}})},
                               {"best_val_accuracy", 0.2},
                               {"best_step", 20},
                               {"interval_loss", 1.5},
                               {"interval_steps", 20},
                               {"wall_seconds", 3.5}};
  const std::vector<float> p = {0.5f, -1.0f, 2.0f}, m = {0.1f, 0.2f, 0.3f}, v = {1e-3f, 2e-3f, 3e-3f};
  const std::string path = (work / "run.ckpt").string();
  save_checkpoint(path, meta, p.data(), m.data(), v.data(), 3);
  seed("checkpoint", "run.ckpt", read_file(path));
  save_checkpoint(path, {{"run_id", "x"}}, nullptr, nullptr, nullptr, 0);
  seed("checkpoint", "no_tensors.ckpt", read_file(path));
}

std::string record(const test::RunSpec& s) { return test::run_record(s).dump(1); }

std::string bench_record() {
  nlohmann::json rows = nlohmann::json::array();
  for (const char* attn : {"softmax", "performer"})
    for (int len : {1024, 2048})
      rows.push_back({{"attn", attn}, {"mode", "fwdbwd"}, {"device", "cpu"}, {"len", len}, {"batch", 8},
                      {"heads", 4}, {"dim", 128}, {"threads", 2}, {"ms_median", 10.0 * len / 1024},
                      {"peak_arena_bytes", 1048576.0 * len}, {"causal", false}, {"steps", 10}, {"warmup", 2},
                      {"seed", 0}, {"attn_params", nlohmann::json::object()}});
  return nlohmann::json({{"kind", "bench_attn"},
                         {"created", "2026-01-01T00:00:00Z"},
                         {"config", {{"preset", "cpu"}}},
                         {"rows", rows},
                         {"env", {{"cpu", "Test CPU 9000"}, {"threads", 2}}}})
      .dump(1);
}

void run_records() {
  using test::RunSpec;
  const RunConfig c = resolve_config("listops", "softmax", "cpu", "", {});
  seed("run_records", "grid",
       joined({record(RunSpec("listops", "softmax").seed(0).accuracy(0.37).config(c.to_json())),
               record(RunSpec("listops", "softmax").seed(1).accuracy(0.39)),
               record(RunSpec("text", "performer").ended("failed")),
               record(RunSpec("text", "performer").seed(1).ended("interrupted")),
               record(RunSpec("image", "linformer").data("fashion-mnist", "files").on("paper")), bench_record()}));
  seed("run_records", "one_run", record(RunSpec("pathfinder", "cosformer").steps(10).started("2026-02-01T00:00:00Z")));
  seed("run_records", "published_and_junk",
       joined({R"({"kind": "published_accuracy", "values": []})", "{\"schema_version\": 1}", "[1, 2]", "{"}));
}

void published() {
  for (const auto& e : fs::directory_iterator(fs::path(LRA_SOURCE_DIR) / "results" / "published"))
    seed("published", e.path().filename().string(), read_file(e.path().string()));
}

void config() {
  seed("config", "empty.json", "{}");
  seed("config", "keys.json",
       R"({"num_train_steps": 10, "learning_rate": 0.01, "batch_size": 4, "max_length": 64, "emb_dim": 32,
  "classifier_pool": "MEAN", "gelu": "exact", "factors": "constant * linear_warmup", "seed": 3,
  "attn_params": {"features": 64, "causal": false}, "task_params": {"zero_is_padding": false}})");
  seed("config", "flat_options.json", R"({"features": 16, "dataset": "fashion-mnist", "interaction": "concat",
  "resolution": 32, "difficulty": "easy", "val_split": "test", "num_layers": 1, "dropout_rate": 0.0})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_FOLDER (fuzz/corpus)\n", argv[0]);
    return 2;
  }
  out_root = argv[1];
  work = fs::temp_directory_path() / ("lra-fuzz-corpus-" + std::to_string(static_cast<long>(getpid())));
  fs::create_directories(work);
  listops_tsv();
  aan_tsv();
  imdb();
  cifar();
  idx();
  pathfinder_released();
  data_cache();
  checkpoint();
  run_records();
  published();
  config();
  fs::remove_all(work);
  std::printf("seed corpora written under %s\n", out_root.c_str());
  return 0;
}
