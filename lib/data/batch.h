// The data the tasks produce and the model consumes, and nothing else: a split of unpadded token
// documents (what a task loads) and a packed batch of examples drawn from it (what the model takes).
// Data knows no model: this layer sees only core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lra {

// Where a split's examples came from, so that `lra data show` can point at the place in the files a
// reader took an example from. Example i is item item[i] of sources[source[i]], counted in that
// source's unit: "line" (1-based, of a text file), "record" (0-based, of a binary file), "example" (the
// index in a generator's output), or "" (the example is the whole file). Empty when the code that
// built the split did not say.
struct Origins {
  std::vector<std::string> sources;
  std::vector<std::string> units;  // per source
  std::vector<uint32_t> source;    // per example
  std::vector<int64_t> item;       // per example
  bool empty() const { return source.empty(); }
  // The origin of the next example (sources repeat in runs, so only a change adds one).
  void add(const std::string& src, const std::string& unit, int64_t at);
  // The origin of example i of `from`, when `from` has origins.
  void copy(const Origins& from, size_t i);
  // Only the first n examples' origins.
  void keep_first(size_t n);
  // "path, line 12", "path, record 3", "path": where example i came from ("" when not known).
  std::string describe(size_t i) const;
};

// One split in memory: document d's tokens are tokens[offsets[d] .. offsets[d+1]), unpadded and
// already truncated to max_length. An example is one document, or (docs = 2, retrieval) the pair of
// documents 2i and 2i + 1.
struct Split {
  std::vector<uint16_t> tokens;
  std::vector<uint64_t> offsets{0};
  std::vector<int32_t> labels;
  int docs = 1;  // documents per example
  // Token 0 is padding (LRA's image models mask pixel value 0): make_batch hides those keys.
  bool zero_is_padding = false;
  Origins origins;  // per example, or empty

  size_t size() const { return labels.size(); }              // examples
  size_t num_docs() const { return offsets.size() - 1; }     // documents
  int length(size_t d) const { return static_cast<int>(offsets[d + 1] - offsets[d]); }  // of document d
  void add(const std::vector<uint16_t>& toks, int32_t label) {
    tokens.insert(tokens.end(), toks.begin(), toks.end());
    offsets.push_back(tokens.size());
    labels.push_back(label);
  }
  void add_pair(const std::vector<uint16_t>& first, const std::vector<uint16_t>& second, int32_t label) {
    for (const auto* toks : {&first, &second}) {
      tokens.insert(tokens.end(), toks->begin(), toks->end());
      offsets.push_back(tokens.size());
    }
    labels.push_back(label);
  }
};

// One batch as the model takes it: packed (no padding rows), host side.
struct Batch {
  int B = 0;
  int docs = 1;                    // documents per example: 2 for the dual encoder's pairs
  int L_pad = 0;                   // the padded length this batch stands for (the task's max_length)
  std::vector<int32_t> tokens;     // the real tokens of all documents, back to back
  // B * docs + 1: document s owns tokens[offsets[s] .. offsets[s+1]). With pairs, documents 0..B-1 are
  // the examples' first documents and B..2B-1 their second ones, in the same order.
  std::vector<int32_t> offsets;
  std::vector<uint8_t> key_mask;   // per token, 1 = attend; empty = every token is real
  std::vector<int32_t> labels;     // B
  // Where this batch sits in the global batch it was cut from (slice_batch), per segment of documents (0:
  // the first documents, 1: with pairs, the second ones): how many more documents and tokens come before
  // the segment in the global batch's packed layout than in this batch's. Zero for a batch that is its own
  // global batch. Dropout is keyed by the rows of the global batch (RowMap), so each process's share
  // draws the masks of the one-process run.
  int64_t docs_shift[2] = {0, 0};
  int64_t tokens_shift[2] = {0, 0};
  int64_t num_tokens() const { return offsets.empty() ? 0 : offsets.back(); }
};

// Builds a batch from examples idx of a split (packed, no padding; documents cut to max_length);
// L_pad = max_length.
Batch make_batch(const Split& split, const std::vector<size_t>& idx, int max_length);

// Examples [lo, hi) of `whole`, placed in whole's global batch (docs_shift, tokens_shift): one process's
// share of a data-parallel step. Empty (B = 0) when lo == hi.
Batch slice_batch(const Batch& whole, int lo, int hi);

}  // namespace lra
