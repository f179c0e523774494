// ListOps (LRA's `lra_benchmarks/data/listops.py` and `listops/input_pipeline.py`): a generator
// with LRA's distribution, the `Source` serialisation, the label semantics, the tokeniser and the
// TSV files.
//
// A tree is held as its token ids in prefix order, which is exactly what the model sees:
// MAX(2, 9, MIN(4, 7), 0) is [MAX 2 9 [MIN 4 7 ] 0 ]. These ids determine the tree, its `Source`
// string and its label.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"
#include "tasks/task.h"

namespace lra::listops {

// LRA's 15 tokens as a fixed bijection onto 1..15 (LRA's own order comes from a Python set, so any
// fixed order is equivalent); 0 is padding and 16 the out-of-vocabulary id LRA reserves.
enum TokenId : uint16_t {
  kPad = 0,
  kMin = 1,
  kMax = 2,
  kMed = 3,
  kSm = 4,
  kClose = 5,   // `]`, which LRA's pipeline rewrites as `X`
  kDigit0 = 6,  // digits 0..9 are 6..15
  kUnknown = 16,
};
constexpr int kVocabSize = 17;
constexpr int kNumClasses = 10;
constexpr int kDefaultMaxLength = 2000;  // LRA's `max_length`: sequences are truncated to it

struct GeneratorConfig {
  int max_depth = 10;    // the root is at depth 1; nodes at max_depth are leaves
  int max_args = 10;     // an operator takes 2..max_args arguments
  int min_length = 500;  // keep a tree only when min_length < length < max_length
  int max_length = 2000;
  double value_p = 0.25;  // a node above max_depth is a leaf when u ~ U[0,1) exceeds this
};

struct SplitSizes {
  int64_t train = 96000, val = 2000, test = 2000;
};

// Draws one tree into `out` (cleared first) with LRA's recursion: leaf or operator, then the
// argument count, the arguments, and the operator last. Returns false, leaving `out` incomplete, as
// soon as the tree is certain to have at least cfg.max_length tokens; such a tree would be rejected
// anyway, so stopping early only skips work (accepted trees are unaffected) and leaves the rest of
// the stream to the next tree.
bool sample_tree(Rng& rng, const GeneratorConfig& cfg, std::vector<uint16_t>& out);

// Draws unique trees with cfg.min_length < length < cfg.max_length, deterministically per seed
// (and independently of the thread count), and assigns the first sizes.val to val, the next
// sizes.test to test and then sizes.train to train, so each split is a prefix-stable function of
// the seed. Labels are evaluate(). info is left empty.
TaskData generate(uint64_t seed, const SplitSizes& sizes, const GeneratorConfig& cfg = {});

// The value of a tree in prefix token ids: MIN, MAX, SM = sum mod 10, MED = int(np.median(args)).
// Throws lra::Error when the ids are not one well-formed tree.
int evaluate(const uint16_t* tokens, size_t n);
inline int evaluate(const std::vector<uint16_t>& tokens) {
  return evaluate(tokens.data(), tokens.size());
}

// LRA's `Source` string: OP(a1..ak) is ((..((OP a1) a2)..ak) ]), each pair printed as `( X Y )`.
void append_source(const uint16_t* tokens, size_t n, std::string& out);
std::string to_source(const std::vector<uint16_t>& tokens);

// The id of one token (`X` is a synonym of `]`); kUnknown when it is not in the vocabulary.
uint16_t token_id(std::string_view token);
// The token of an id 1..15 as `Source` spells it (`]` for kClose); "" otherwise.
std::string_view token_name(uint16_t id);

// LRA's tokeniser: delete every `(` and `)`, split on whitespace, map with token_id. Appends to
// `out` and returns "" on success; otherwise returns what is wrong (an unknown token, unbalanced
// parentheses, no tokens) and `out` is unspecified.
std::string tokenize_into(std::string_view source, std::vector<uint16_t>& out);
// The same, throwing lra::Error on a problem.
std::vector<uint16_t> tokenize(std::string_view source);

// Writes `Source<TAB>Target` and one line per example with CRLF endings (Python csv's default),
// through a temporary file and a rename.
void write_tsv(const std::string& path, const Split& split);

// Reads a `Source<TAB>Target` file (a UTF-8 BOM, CRLF or LF endings and trailing blank lines are
// fine). limit > 0 reads only the first `limit` examples and throws when the file has fewer;
// max_length > 0 truncates each example. A malformed line throws lra::Error naming the file, the
// 1-based line number and the problem.
Split read_tsv(const std::string& path, int64_t limit = 0, int max_length = 0);

// The examples in a `Source<TAB>Target` file, counted without parsing them: its non-blank lines after
// the header. Throws naming the file when it cannot be read or does not start with the header.
int64_t count_tsv_examples(const std::string& path);

// The folder holding basic_{train,val,test}.tsv: data_dir itself, data_dir/listops-1000,
// data_dir/lra_release/listops-1000 or data_dir/lra_release/lra_release/listops-1000, first match
// wins; "" when none has basic_train.tsv. `tried` receives the folders looked at. A folder with
// basic_train.tsv but without the other two is a broken copy of the release and throws.
std::string locate_data_dir(const std::string& data_dir, std::vector<std::string>& tried);

// The cache folder for generated data: <cache_dir>/listops/seed<S>-train<N>-val<N>-test<N>, with
// the default sizes filled in and default_cache_dir() when opt.cache_dir is empty.
std::string cache_path(const DataOptions& opt);

// The task's load(): the released files when locate_data_dir(opt.data_dir) finds them, else the
// generator's cache (generated and written on first use). A --data-dir without ListOps files is said
// on stderr and recorded in info.generator["reason"].
TaskData load(const DataOptions& opt);
// The task's data_status(): what load(opt) would read or generate, without generating anything.
DataStatus data_status(const DataOptions& opt);

}  // namespace lra::listops
