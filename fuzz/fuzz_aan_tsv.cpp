// AAN's new_aan_pairs.*.tsv (Retrieval): retrieval::read_tsv, which parses every line with parse_line.
#include "fuzz/fuzz_util.h"
#include "tasks/retrieval/retrieval.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const std::string path = fuzz::write(fuzz::scratch() / "new_aan_pairs.train.tsv", data, size);
  for (int max_length : {retrieval::kDefaultMaxLength, 7})
    fuzz::expect_error([&] {
      const Split s = retrieval::read_tsv(path, max_length);
      fuzz::require(s.docs == 2 && s.size() > 0 && s.offsets.size() == 2 * s.size() + 1 &&
                        s.offsets.back() == s.tokens.size(),
                    "read_tsv returns a consistent split of pairs");
      for (size_t d = 0; d < s.num_docs(); ++d)
        fuzz::require(s.length(d) <= max_length, "documents are cut to max_length");
      for (int32_t label : s.labels) fuzz::require(label == 0 || label == 1, "labels are 0 or 1");
    });
  fuzz::expect_error([&] { retrieval::read_tsv(path, 100, 1); });
  return 0;
}
