#include "data/batch.h"

#include <algorithm>

#include "core/check.h"

namespace lra {

void Origins::add(const std::string& src, const std::string& unit, int64_t at) {
  if (sources.empty() || sources.back() != src || units.back() != unit) {
    sources.push_back(src);
    units.push_back(unit);
  }
  source.push_back(static_cast<uint32_t>(sources.size() - 1));
  item.push_back(at);
}

void Origins::copy(const Origins& from, size_t i) {
  if (i < from.source.size()) add(from.sources[from.source[i]], from.units[from.source[i]], from.item[i]);
}

void Origins::keep_first(size_t n) {
  if (n < source.size()) {
    source.resize(n);
    item.resize(n);
  }
}

std::string Origins::describe(size_t i) const {
  if (i >= source.size()) return "";
  const std::string& unit = units[source[i]];
  const std::string& src = sources[source[i]];
  return unit.empty() ? src : src + ", " + unit + " " + std::to_string(item[i]);
}

Batch make_batch(const Split& split, const std::vector<size_t>& idx, int max_length) {
  LRA_CHECK(split.docs >= 1 && split.num_docs() == split.size() * static_cast<size_t>(split.docs),
            "a split of {} examples holds {} documents, not {} per example", split.size(), split.num_docs(),
            split.docs);
  Batch b;
  b.B = static_cast<int>(idx.size());
  b.docs = split.docs;
  b.L_pad = max_length;
  b.offsets.reserve(idx.size() * static_cast<size_t>(split.docs) + 1);
  b.offsets.push_back(0);
  b.labels.reserve(idx.size());
  for (size_t i : idx) {
    LRA_CHECK(i < split.size(), "example {} requested from a split of {}", i, split.size());
    b.labels.push_back(split.labels[i]);
  }
  // All first documents, then all second ones (Batch's layout for pairs).
  for (int k = 0; k < split.docs; ++k)
    for (size_t i : idx) {
      const size_t d = i * static_cast<size_t>(split.docs) + static_cast<size_t>(k);
      const int len = std::min(split.length(d), max_length);
      const uint16_t* t = split.tokens.data() + split.offsets[d];
      b.tokens.insert(b.tokens.end(), t, t + len);
      if (split.zero_is_padding)
        for (int j = 0; j < len; ++j) b.key_mask.push_back(t[j] != 0 ? 1 : 0);
      b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
    }
  return b;
}

Batch slice_batch(const Batch& whole, int lo, int hi) {
  LRA_CHECK(0 <= lo && lo <= hi && hi <= whole.B, "examples [{}, {}) of a batch of {}", lo, hi, whole.B);
  LRA_CHECK(whole.docs >= 1 && whole.docs <= 2 &&
                whole.offsets.size() == static_cast<size_t>(whole.B) * static_cast<size_t>(whole.docs) + 1,
            "malformed batch: {} offsets for {} examples of {} document(s)", whole.offsets.size(), whole.B,
            whole.docs);
  Batch b;
  b.B = hi - lo;
  b.docs = whole.docs;
  b.L_pad = whole.L_pad;
  b.offsets.push_back(0);
  b.labels.assign(whole.labels.begin() + lo, whole.labels.begin() + hi);
  for (int k = 0; k < whole.docs; ++k) {
    const size_t first = static_cast<size_t>(k) * static_cast<size_t>(whole.B);  // the segment's first document
    const int32_t t0 = whole.offsets[first + static_cast<size_t>(lo)], t1 = whole.offsets[first + static_cast<size_t>(hi)];
    // Before the segment: here k * B documents and b.tokens.size() tokens; in whole, (k * whole.B + lo)
    // and t0, to which whole's own shifts add.
    b.docs_shift[k] = whole.docs_shift[k] + static_cast<int64_t>(k) * whole.B + lo - static_cast<int64_t>(k) * b.B;
    b.tokens_shift[k] = whole.tokens_shift[k] + t0 - static_cast<int64_t>(b.tokens.size());
    const int32_t shift = static_cast<int32_t>(b.tokens.size()) - t0;
    b.tokens.insert(b.tokens.end(), whole.tokens.begin() + t0, whole.tokens.begin() + t1);
    if (!whole.key_mask.empty())
      b.key_mask.insert(b.key_mask.end(), whole.key_mask.begin() + t0, whole.key_mask.begin() + t1);
    for (int d = lo; d < hi; ++d) b.offsets.push_back(whole.offsets[first + static_cast<size_t>(d) + 1] + shift);
  }
  return b;
}

}  // namespace lra
