#include "tasks/common/standin.h"

#include <string_view>

namespace lra::standin {

void write_document(Rng& rng, size_t target, const std::function<DrawnWord(Rng&)>& draw, std::string& doc,
                    std::vector<int>& counts) {
  doc.clear();
  std::fill(counts.begin(), counts.end(), 0);
  uint64_t sentence_left = 4 + rng.below(14);
  std::string_view sep;  // what goes before the next word
  for (;;) {
    const DrawnWord w = draw(rng);
    if (doc.size() + sep.size() + w.word->size() + 1 > target) break;
    doc += sep;
    doc += *w.word;
    if (w.kind >= 0) ++counts.at(static_cast<size_t>(w.kind));
    sep = " ";
    if (--sentence_left == 0) {
      doc += '.';
      sep = rng.below(10) == 0 ? " <br /><br />" : " ";
      sentence_left = 4 + rng.below(14);
    }
  }
  if (doc.empty() || doc.back() != '.') doc += '.';
}

}  // namespace lra::standin
