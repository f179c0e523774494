// Text: IMDB sentiment at the byte level, as LRA's `text_classification/input_pipeline.py` reads it
// through TFDS `imdb_reviews`, and a generated stand-in for machines without IMDB.
//
// Format facts relied on (docs/data-formats.md section 3):
// - aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, one review per file (UTF-8, one line, with
//   literal `<br />` tags), 12,500 per folder; aclImdb/train/unsup holds unlabelled reviews, which
//   LRA does not use. aclImdb_v1.tar.gz holds the same tree under `aclImdb/`.
// - TFDS reads each file as bytes and applies bytes.strip(), which removes ASCII whitespace
//   (space, \t, \n, \r, \v, \f) at both ends and nothing else; neg = 0, pos = 1.
// - ByteTextEncoder: byte b -> id b + 1 (1..256), 0 is padding, vocab_size 257.
// - LRA trains on `train` (25k) and uses `test` (25k) as both validation and test.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tasks/task.h"

namespace lra::text {

constexpr int kVocabSize = 257;
constexpr int kNumClasses = 2;
// The paper's "Text (4K)"; LRA's released config (base_tc_config.py) uses 1000.
constexpr int kDefaultMaxLength = 4000;
constexpr int64_t kImdbSplitSize = 25000;  // reviews in each of IMDB's train and test splits

// bytes.strip(): `s` without ASCII whitespace at either end.
std::string_view strip_ascii_whitespace(std::string_view s);
// ByteTextEncoder: appends byte + 1 for each byte of `s`.
void append_byte_ids(std::string_view s, std::vector<uint16_t>& out);

// Where IMDB is found under a data folder.
struct ImdbSource {
  enum Kind { None, Folder, Archive } kind = None;
  std::string path;                // the aclImdb folder or the archive
  std::vector<std::string> tried;  // the places looked at, for messages
};

// Looks in order for: `data_dir` itself as an aclImdb folder (it has train/ or test/ with pos/ or
// neg/ inside) or as the archive file, data_dir/aclImdb/, data_dir/aclImdb_v1.tar.gz. None when
// data_dir is empty or holds none of them.
ImdbSource find_imdb(const std::string& data_dir);

// IMDB's labelled reviews, encoded and untruncated, in a fixed order independent of how they were
// stored: neg before pos, then by file name.
struct ImdbReviews {
  Split train, test;
  // A digest of every review's relative path and raw bytes in that order: equal for a folder and the
  // archive it came from.
  std::string digest;
};

// Reads an aclImdb folder. Throws naming the folder when one of {train,test}/{pos,neg} is missing or
// empty, and naming the file when one cannot be read or is empty after stripping.
ImdbReviews read_imdb_folder(const std::string& dir);
// The same from aclImdb_v1.tar.gz (members .../{train,test}/{pos,neg}/*.txt).
ImdbReviews read_imdb_archive(const std::string& path);
// A cache key for an aclImdb folder that does not read its 50,000 files: the name, size and
// modification time of every review file.
std::string folder_listing_digest(const std::string& dir);

// The stand-in: byte-level documents whose label says which of two marker vocabularies occurs more
// often over the whole document (see standin.cpp).
struct StandInConfig {
  double marker_rate = 0.08;  // the chance that a word is a marker word
  double min_bias = 0.05;     // a document draws pos markers with probability 0.5 +- U[min_bias, max_bias]
  double max_bias = 0.25;
};
constexpr int kStandInMinLength = 64;

// Document `index` of stream `stream`: a pure function of its arguments, between max_length / 2 and
// max_length bytes, encoded as byte ids. Returns the label (1 when pos markers outnumber neg ones).
int standin_document(uint64_t seed, uint64_t stream, uint64_t index, int max_length,
                     const StandInConfig& cfg, std::vector<uint16_t>& out);
// Documents 0..n-1 of a stream (in parallel; the result does not depend on the thread count).
Split standin_split(uint64_t seed, uint64_t stream, int64_t n, int max_length, const StandInConfig& cfg = {});
// The stand-in's streams.
constexpr uint64_t kStandInTrain = 0, kStandInHeldOut = 1, kStandInTest = 2;
// The stand-in's marker words of class `label` (0 = neg, 1 = pos).
const std::vector<std::string>& standin_markers(int label);

// The task's load(): IMDB when find_imdb(data_dir) finds it (parsed once into the cache), else the
// stand-in.
TaskData load(const DataOptions& opt);
// The task's data_status(): what load(opt) would use; counting IMDB parses it into the same cache.
DataStatus data_status(const DataOptions& opt);

}  // namespace lra::text
