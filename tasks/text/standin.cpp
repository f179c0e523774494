// The Text stand-in used when no IMDB is found: byte-level, review-like documents whose label
// depends on the whole document, not on its beginning.
//
// A document is lowercase words separated by spaces, in sentences of 4-17 words ending with ". ",
// sometimes followed by IMDB's "<br /><br />". Two vocabularies overlap: both hold the shared
// words, and each adds its own marker words (pos or neg). Each word is a marker with probability
// marker_rate, placed uniformly over the document; a marker is pos with probability 0.5 + b or
// 0.5 - b (b ~ U[min_bias, max_bias], the side drawn per document). The label is 1 when pos markers
// outnumber neg ones over the whole document (ties are redrawn), so the first 100 bytes (a few
// markers out of dozens at max_length 4000) predict it only weakly, while counting over the whole
// document decides it exactly. Lengths are uniform in [max_length / 2, max_length] bytes, less the
// part of a word that did not fit.
//
// Every document is a pure function of (seed, stream, index, max_length), drawn from its own Philox
// stream, so generation runs in parallel, is independent of the thread count and is fast enough
// (tens of MB/s per core) that the documents are generated at every load instead of cached: a cache
// of 25k + 25k documents of 4000 ids would be ~400 MB to read back.
#include <fmt/format.h>

#include <algorithm>

#include "core/check.h"
#include "core/rng.h"
#include "tasks/common/standin.h"
#include "tasks/text/text.h"

namespace lra::text {

namespace {

// The stand-in's Philox streams: kStreamBase | stream << 40 | document index.
constexpr uint64_t kStreamBase = 8ull << 56;
constexpr int kMaxAttempts = 10000;

const std::vector<std::string>& shared_words() {
  static const std::vector<std::string> words = {
      "the",    "a",      "and",    "of",     "to",      "is",     "in",     "it",     "this",   "that",
      "was",    "as",     "with",   "for",    "movie",   "film",   "but",    "on",     "not",    "you",
      "his",    "her",    "have",   "he",     "she",     "be",     "one",    "all",    "at",     "by",
      "an",     "they",   "who",    "so",     "from",    "like",   "there",  "or",     "just",   "about",
      "out",    "if",     "what",   "some",   "story",   "plot",   "scene",  "scenes", "actor",  "actors",
      "cast",   "role",   "time",   "when",   "more",    "very",   "even",   "would",  "only",   "which",
      "really", "see",    "seen",   "watch",  "director", "script", "ending", "music",  "camera", "first",
      "then",   "after",  "while",  "other",  "into",    "most",   "much",   "also",   "character",
      "characters", "part", "show", "series", "years",   "way",    "people", "end",    "made",   "make",
      "think",  "still",  "too",    "know",   "again",   "little", "long",   "both",   "here",   "its"};
  return words;
}

const std::vector<std::string>& neg_markers() {
  static const std::vector<std::string> words = {"awful",  "dull",     "boring", "clumsy",  "tedious",   "bland",
                                                 "lame",   "dreadful", "wooden", "pointless", "messy", "forgettable"};
  return words;
}

const std::vector<std::string>& pos_markers() {
  static const std::vector<std::string> words = {"great",    "superb",   "moving", "wonderful", "brilliant", "charming",
                                                 "gripping", "touching", "witty",  "stunning",  "delightful", "masterful"};
  return words;
}

}  // namespace

const std::vector<std::string>& standin_markers(int label) { return label == 1 ? pos_markers() : neg_markers(); }

int standin_document(uint64_t seed, uint64_t stream, uint64_t index, int max_length, const StandInConfig& cfg,
                     std::vector<uint16_t>& out) {
  LRA_CHECK(max_length >= kStandInMinLength,
            "the Text stand-in needs max_length >= {} to hold enough words, got {}", kStandInMinLength, max_length);
  LRA_CHECK(index < (uint64_t{1} << 40) && stream < 256, "stand-in document index {} of stream {} out of range", index,
            stream);
  Rng rng(seed, kStreamBase | stream << 40 | index);
  const auto& shared = shared_words();
  const uint64_t min_len = static_cast<uint64_t>(max_length / 2);
  const size_t target = static_cast<size_t>(min_len + rng.below(static_cast<uint64_t>(max_length) - min_len + 1));
  const uint32_t marker_threshold = static_cast<uint32_t>(cfg.marker_rate * 4294967296.0);
  std::string doc;
  doc.reserve(target);
  std::vector<int> counts(2);  // neg, pos markers placed
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    const bool pos_side = (rng.next_u32() & 1u) != 0;
    const double bias = cfg.min_bias + (cfg.max_bias - cfg.min_bias) * rng.uniform();
    const auto pos_threshold = static_cast<uint32_t>((pos_side ? 0.5 + bias : 0.5 - bias) * 4294967296.0);
    standin::write_document(
        rng, target,
        [&](Rng& r) {
          if (r.next_u32() < marker_threshold) {
            const int kind = r.next_u32() < pos_threshold ? 1 : 0;
            const auto& markers = standin_markers(kind);
            return standin::DrawnWord{&markers[r.below(markers.size())], kind};
          }
          return standin::DrawnWord{&shared[r.below(shared.size())], -1};
        },
        doc, counts);
    if (counts[1] != counts[0]) {
      out.clear();
      append_byte_ids(doc, out);
      return counts[1] > counts[0] ? 1 : 0;
    }
  }
  LRA_FAIL("the Text stand-in drew {} documents of up to {} bytes in a row with as many pos as neg markers; "
           "raise max_length",
           kMaxAttempts, max_length);
}

Split standin_split(uint64_t seed, uint64_t stream, int64_t n, int max_length, const StandInConfig& cfg) {
  Split split;
  split.tokens.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)) * static_cast<size_t>(max_length) * 3 / 4);
  struct Doc {
    std::vector<uint16_t> ids;
    int label = 0;
  };
  standin::generate_in_order<Doc>(
      n, [&](int64_t i, Doc& d) { d.label = standin_document(seed, stream, static_cast<uint64_t>(i), max_length, cfg, d.ids); },
      [&](int64_t i, const Doc& d) {
        split.add(d.ids, d.label);
        split.origins.add(fmt::format("the stand-in generator (seed {}, stream {})", seed, stream), "example", i);
      });
  return split;
}

}  // namespace lra::text
