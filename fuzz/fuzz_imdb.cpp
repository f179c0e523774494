// IMDB (Text): the input as aclImdb_v1.tar.gz (tar, optionally compressed) for read_imdb_archive, which
// walks it with for_each_archive_file and path_components; and split into review files of an aclImdb
// folder ({train,test}/{neg,pos}/<i>.txt, in turn) for read_imdb_folder.
#include "fuzz/fuzz_util.h"
#include "tasks/text/text.h"

namespace {

void check(const lra::text::ImdbReviews& r) {
  using lra::fuzz::require;
  for (const lra::Split* s : {&r.train, &r.test}) {
    require(s->size() > 0 && s->offsets.size() == s->size() + 1 && s->offsets.back() == s->tokens.size(),
            "the IMDB reader returns consistent splits");
    for (int32_t label : s->labels) require(label == 0 || label == 1, "labels are 0 (neg) or 1 (pos)");
    for (uint16_t t : s->tokens) require(t >= 1 && t <= 256, "byte ids are 1..256");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const auto dir = fuzz::scratch();
  const std::string archive = fuzz::write(dir / "aclImdb_v1.tar.gz", data, size);
  fuzz::expect_error([&] { check(text::read_imdb_archive(archive)); });

  const char* const groups[] = {"train/neg", "train/pos", "test/neg", "test/pos"};
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 16);
  for (const char* g : groups) std::filesystem::create_directories(dir / "aclImdb" / g);
  for (size_t i = 0; i < parts.size(); ++i)
    fuzz::write(dir / "aclImdb" / groups[i % 4] / (std::to_string(i) + "_7.txt"), parts[i]);
  fuzz::expect_error([&] { check(text::read_imdb_folder((dir / "aclImdb").string())); });
  return 0;
}
