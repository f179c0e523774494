// Shared machinery of the built-in stand-ins for the byte-level tasks (text, retrieval), used when the
// official files are absent: review-like documents of words, and generation in parallel blocks whose
// result does not depend on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/rng.h"

namespace lra::standin {

// A word to place and its kind: a marker class (>= 0, counted) or filler (-1).
struct DrawnWord {
  const std::string* word;
  int kind;
};

// Clears `doc` and fills it with words from draw(rng): lowercase words separated by spaces, in
// sentences of 4-17 words ending with ". ", one in ten followed by IMDB's "<br /><br />", until the
// next word would pass `target` bytes (one byte is kept for the final full stop). counts[kind] is
// incremented for every marker word placed (counts is zeroed first; it must have a slot per kind).
void write_document(Rng& rng, size_t target, const std::function<DrawnWord(Rng&)>& draw, std::string& doc,
                    std::vector<int>& counts);

// Calls make(i, item) for i in [0, n) in parallel blocks of 1024, each item a pure function of i, then
// append(i, item) in order of i: the result is the same for any thread count. An lra::Error thrown by
// make is rethrown (one of them, when several threads fail).
template <class Item, class Make, class Append>
void generate_in_order(int64_t n, Make&& make, Append&& append) {
  constexpr int64_t kBlock = 1024;
  LRA_CHECK(n >= 0, "the number of stand-in examples must not be negative, got {}", n);
  std::vector<Item> items(static_cast<size_t>(std::min(n, kBlock)));
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t count = std::min(kBlock, n - begin);
    bool failed = false;
    std::string error;
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < count; ++i) {
      try {
        make(begin + i, items[static_cast<size_t>(i)]);
      } catch (const Error& e) {
#pragma omp critical
        {
          failed = true;
          error = e.what();
        }
      }
    }
    if (failed) throw Error(error);
    for (int64_t i = 0; i < count; ++i) append(begin + i, items[static_cast<size_t>(i)]);
  }
}

}  // namespace lra::standin
