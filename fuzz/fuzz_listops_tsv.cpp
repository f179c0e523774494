// ListOps TSV files (basic_{train,val,test}.tsv): listops::read_tsv, whole and with the limit and
// truncation `lra run` passes, and count_tsv_examples, which `lra data status` shows and which must
// agree with what read_tsv reads.
#include "fuzz/fuzz_util.h"
#include "tasks/listops/listops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const std::string path = fuzz::write(fuzz::scratch() / "basic_train.tsv", data, size);
  fuzz::expect_error([&] {
    const Split all = listops::read_tsv(path);
    fuzz::require(all.size() > 0 && all.offsets.size() == all.size() + 1 && all.offsets.back() == all.tokens.size(),
                  "read_tsv returns a consistent split");
    for (int32_t label : all.labels) fuzz::require(label >= 0 && label < listops::kNumClasses, "labels are 0..9");
    fuzz::require(listops::count_tsv_examples(path) == static_cast<int64_t>(all.size()),
                  "count_tsv_examples counts what read_tsv reads");
  });
  fuzz::expect_error([&] {
    const Split first = listops::read_tsv(path, 1, 16);
    fuzz::require(first.size() == 1 && first.tokens.size() <= 16, "read_tsv honours limit and max_length");
  });
  fuzz::expect_error([&] { listops::count_tsv_examples(path); });
  return 0;
}
