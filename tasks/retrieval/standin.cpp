// The Retrieval stand-in used when no AAN files are found: pairs of byte-level, paper-like documents
// that match when they are about the same topic, which only counting over both whole documents tells.
//
// A document is filler words of academic prose in sentences (standin::write_document) with topic words
// mixed in: each word is a topic word with probability marker_rate, placed uniformly over the
// document. Topic words are upper-case acronyms, and each topic spells its acronyms with three letters
// of its own (topic 0: A, B, C; topic 1: D, E, F; ...), so that a model reading bytes can tell topics
// apart from the letters alone; what it must still do is count them over both whole documents.
// A topic word comes from the document's own topic with probability 0.5 + b and from a decoy topic
// otherwise a topic word comes from the document's own topic with probability 0.5 + b and from a decoy
// topic otherwise (b ~ U[min_bias, max_bias], the decoy drawn per document). The document's topic is
// the one with more topic words over the whole document (ties are redrawn), so its first 100 bytes
// (a few topic words, often the decoy's) tell it only weakly. A pair is labelled 1 (a match) when both
// documents have the same topic: half the pairs do, and the other half have two different topics,
// where the second document's decoy is the first one's topic half of the time, so a topic word shared
// by both documents is not enough either. Lengths are uniform in [max_length / 2, max_length] bytes.
//
// Every pair is a pure function of (seed, stream, index, max_length), drawn from its own Philox
// stream, so generation runs in parallel and does not depend on the thread count.
#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "core/check.h"
#include "core/rng.h"
#include "tasks/common/standin.h"
#include "tasks/retrieval/retrieval.h"
#include "tasks/text/text.h"

namespace lra::retrieval {

namespace {

// The stand-in's Philox streams: kStreamBase | stream << 40 | pair index << 2 | k, with k = 0 for the
// pair's label and topics and k = 1, 2 for its two documents.
constexpr uint64_t kStreamBase = 10ull << 56;
constexpr int kMaxAttempts = 10000;

const std::vector<std::string>& filler_words() {
  static const std::vector<std::string> words = {
      "the",      "of",        "and",     "a",        "to",       "in",         "we",        "is",
      "for",      "that",      "this",    "on",       "with",     "as",         "are",       "by",
      "be",       "an",        "which",   "from",     "our",      "these",      "can",       "results",
      "method",   "approach",  "model",   "models",   "paper",    "present",    "show",      "use",
      "used",     "using",     "based",   "task",     "work",     "data",       "set",       "each",
      "two",      "one",       "first",   "also",     "such",     "than",       "more",      "table",
      "figure",   "section",   "between", "system",   "systems",  "performance", "previous", "propose",
      "proposed", "evaluation", "compared", "features", "information", "number", "example",  "however",
      "both",     "while",     "into",    "their",    "has",      "have",       "not",       "other"};
  return words;
}

// Each topic's six acronyms: the same letter patterns spelled with the topic's three letters.
const std::array<std::vector<std::string>, kStandInTopics>& topics() {
  static const std::array<std::vector<std::string>, kStandInTopics> t = [] {
    const char* const patterns[] = {"012", "201", "10", "0210", "220", "101"};
    std::array<std::vector<std::string>, kStandInTopics> words;
    for (int k = 0; k < kStandInTopics; ++k)
      for (const char* p : patterns) {
        std::string w;
        for (const char* c = p; *c != '\0'; ++c) w += static_cast<char>('A' + 3 * k + (*c - '0'));
        words[static_cast<size_t>(k)].push_back(w);
      }
    return words;
  }();
  return t;
}

// One document of topic `topic` (with a decoy topic), as text; returns the topic words' counts in
// `counts` (one slot per topic).
void draw_document(Rng& rng, size_t target, int topic, int decoy, uint32_t marker_threshold, uint32_t own_threshold,
                   std::string& doc, std::vector<int>& counts) {
  const auto& filler = filler_words();
  standin::write_document(
      rng, target,
      [&](Rng& r) {
        if (r.next_u32() < marker_threshold) {
          const int t = r.next_u32() < own_threshold ? topic : decoy;
          const auto& words = topics()[static_cast<size_t>(t)];
          return standin::DrawnWord{&words[r.below(words.size())], t};
        }
        return standin::DrawnWord{&filler[r.below(filler.size())], -1};
      },
      doc, counts);
}

// A topic other than `not_this`, uniformly.
int other_topic(Rng& rng, int not_this) {
  const int t = static_cast<int>(rng.below(kStandInTopics - 1));
  return t >= not_this ? t + 1 : t;
}

}  // namespace

const std::vector<std::string>& standin_topic_words(int topic) {
  LRA_CHECK(topic >= 0 && topic < kStandInTopics, "stand-in topic {} is not in [0, {})", topic, kStandInTopics);
  return topics()[static_cast<size_t>(topic)];
}

int standin_pair(uint64_t seed, uint64_t stream, uint64_t index, int max_length, const StandInConfig& cfg,
                 std::vector<uint16_t>& first, std::vector<uint16_t>& second) {
  LRA_CHECK(max_length >= kStandInMinLength,
            "the Retrieval stand-in needs max_length >= {} to hold enough words, got {}", kStandInMinLength,
            max_length);
  LRA_CHECK(index < (uint64_t{1} << 38) && stream < 256, "stand-in pair index {} of stream {} out of range", index,
            stream);
  Rng pair_rng(seed, kStreamBase | stream << 40 | index << 2);
  const int label = static_cast<int>(pair_rng.next_u32() & 1u);
  const int topic1 = static_cast<int>(pair_rng.below(kStandInTopics));
  const int topic2 = label == 1 ? topic1 : other_topic(pair_rng, topic1);
  // The second document's decoy is the first one's topic in half of the non-matching pairs.
  const bool decoy_is_first = label == 0 && (pair_rng.next_u32() & 1u) != 0;
  const uint32_t marker_threshold = static_cast<uint32_t>(cfg.marker_rate * 4294967296.0);
  std::string doc;
  std::vector<int> counts(kStandInTopics);
  for (int d = 0; d < 2; ++d) {
    Rng rng(seed, kStreamBase | stream << 40 | index << 2 | static_cast<uint64_t>(d + 1));
    const int topic = d == 0 ? topic1 : topic2;
    const uint64_t min_len = static_cast<uint64_t>(max_length / 2);
    const size_t target = static_cast<size_t>(min_len + rng.below(static_cast<uint64_t>(max_length) - min_len + 1));
    std::vector<uint16_t>& out = d == 0 ? first : second;
    bool done = false;
    for (int attempt = 0; attempt < kMaxAttempts && !done; ++attempt) {
      const int decoy = d == 1 && decoy_is_first ? topic1 : other_topic(rng, topic);
      const double bias = cfg.min_bias + (cfg.max_bias - cfg.min_bias) * rng.uniform();
      const auto own_threshold = static_cast<uint32_t>((0.5 + bias) * 4294967296.0);
      draw_document(rng, target, topic, decoy, marker_threshold, own_threshold, doc, counts);
      done = counts[static_cast<size_t>(topic)] > counts[static_cast<size_t>(decoy)];
    }
    LRA_CHECK(done,
              "the Retrieval stand-in drew {} documents of up to {} bytes in a row where the decoy topic was as "
              "frequent as the document's own; raise max_length",
              kMaxAttempts, max_length);
    out.clear();
    text::append_byte_ids(doc, out);
  }
  return label;
}

int standin_topic(const std::vector<uint16_t>& ids) {
  std::vector<int> counts(kStandInTopics, 0);
  std::string word;
  auto flush = [&] {
    for (int t = 0; t < kStandInTopics; ++t)
      for (const std::string& w : topics()[static_cast<size_t>(t)]) counts[static_cast<size_t>(t)] += word == w;
    word.clear();
  };
  for (uint16_t id : ids) {
    const char c = static_cast<char>(id - 1);
    if (c >= 'A' && c <= 'Z')
      word += c;
    else
      flush();
  }
  flush();
  const auto best = std::max_element(counts.begin(), counts.end());
  if (*best == 0) return -1;
  if (std::count(counts.begin(), counts.end(), *best) > 1) return -2;
  return static_cast<int>(best - counts.begin());
}

Split standin_split(uint64_t seed, uint64_t stream, int64_t n, int max_length, const StandInConfig& cfg) {
  Split split;
  split.docs = 2;
  split.tokens.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)) * static_cast<size_t>(max_length) * 3 / 2);
  struct Pair {
    std::vector<uint16_t> first, second;
    int label = 0;
  };
  standin::generate_in_order<Pair>(
      n,
      [&](int64_t i, Pair& p) {
        p.label = standin_pair(seed, stream, static_cast<uint64_t>(i), max_length, cfg, p.first, p.second);
      },
      [&](int64_t i, const Pair& p) {
        split.add_pair(p.first, p.second, p.label);
        split.origins.add(fmt::format("the stand-in generator (seed {}, stream {})", seed, stream), "example", i);
      });
  return split;
}

}  // namespace lra::retrieval
