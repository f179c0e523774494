// Retrieval: AAN document matching, as LRA's `matching/input_pipeline.py` reads it, and a generated
// stand-in for machines without the AAN files. Each example is a pair of byte-level documents
// (Split::docs = 2) that the model encodes with one shared encoder (ModelConfig::dual).
//
// Format facts relied on (docs/data-formats.md section 4, docs/lra-facts.md sections 1 and 2.4):
// - new_aan_pairs.{train,eval,test}.tsv (lra_release/lra_release/tsv_data/ in the release): no header,
//   fields split strictly on tabs with no quote handling, five columns: label (a number, 0 or 1, parsed
//   as float and cast to int), id1, id2, text1, text2. 147,086 / 18,090 / 17,437 pairs.
// - Each text is cut to 10,000 bytes, encoded by ByteTextEncoder (id = byte + 1, pad 0, vocab 257)
//   and cut to max_length = 4000 tokens; the two documents are never concatenated.
// - LRA's dual head: [u, v, u*v, u-v] in the paper (A.1.3, Eq. 1); the code concatenates only [u, v].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/task.h"

namespace lra::retrieval {

constexpr int kVocabSize = 257;
constexpr int kNumClasses = 2;
constexpr int kDefaultMaxLength = 4000;
constexpr int kTextBytes = 10000;  // LRA cuts each text to this many bytes before encoding
constexpr const char* kFiles[] = {"new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv", "new_aan_pairs.test.tsv"};
// AAN's pairs per split (train, eval, test): the stand-in's default sizes.
constexpr int64_t kAanSizes[] = {147086, 18090, 17437};

// One line of an AAN file (without its newline; a trailing '\r' is dropped): appends the pair to
// `out` as two documents of byte ids cut to max_length. Returns "" on success, else what is wrong.
std::string parse_line(std::string_view line, int max_length, Split& out);

// Reads one AAN file. limit > 0 reads only the first `limit` pairs (and throws when the file has
// fewer). Empty lines are skipped. A malformed line throws naming the file, the 1-based line number
// and the problem.
Split read_tsv(const std::string& path, int max_length, int64_t limit = 0);

// The folder holding the three files: data_dir itself, data_dir/tsv_data,
// data_dir/lra_release/tsv_data or data_dir/lra_release/lra_release/tsv_data, first match wins.
// "" when data_dir is empty or none has new_aan_pairs.train.tsv; `tried` receives the places looked at.
// A folder with the train file but without the other two throws, naming the missing file.
std::string find_aan(const std::string& data_dir, std::vector<std::string>& tried);

// The stand-in: documents on one of kStandInTopics topics, marked by upper-case acronyms spelled with
// letters of the topic's own; a pair matches when both are on the same topic (see standin.cpp).
constexpr int kStandInTopics = 8;
constexpr int kStandInMinLength = 64;
struct StandInConfig {
  // The chance that a word is a topic word. At 0.08 (the Text stand-in's rate) the cpu preset's model
  // left chance level after 750 (seed 1) and 1400 (seed 0) steps; at 0.15 it was at 92% by step 500.
  double marker_rate = 0.15;
  double min_bias = 0.05;     // a document's topic words are its own topic's with probability 0.5 + b,
  double max_bias = 0.25;     // else a decoy topic's, b ~ U[min_bias, max_bias]
};
// The topic words (acronyms) of topic t.
const std::vector<std::string>& standin_topic_words(int topic);
// Pair `index` of stream `stream`: appends two documents of max_length/2..max_length bytes (as byte
// ids) to `out`; returns the label (1 = same topic). A pure function of its arguments.
int standin_pair(uint64_t seed, uint64_t stream, uint64_t index, int max_length, const StandInConfig& cfg,
                 std::vector<uint16_t>& first, std::vector<uint16_t>& second);
// The topic of a stand-in document: the topic with the most topic words (none: -1, tie: -2).
int standin_topic(const std::vector<uint16_t>& ids);
// Pairs 0..n-1 of a stream (in parallel; the result does not depend on the thread count).
Split standin_split(uint64_t seed, uint64_t stream, int64_t n, int max_length, const StandInConfig& cfg = {});
constexpr uint64_t kStandInTrain = 0, kStandInVal = 1, kStandInTest = 2;

// The task's load(): the AAN files when find_aan finds them (parsed once into the cache), else the
// stand-in.
TaskData load(const DataOptions& opt);

}  // namespace lra::retrieval
