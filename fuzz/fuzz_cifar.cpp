// CIFAR-10 binary batches (Image): the input as one batch for decode_cifar_batch (what
// read_cifar_folder does with each file), as cifar-10-binary.tar.gz for read_cifar_archive, and split
// into the six batch files of a cifar-10-batches-bin folder for read_cifar_folder.
#include "fuzz/fuzz_util.h"
#include "tasks/image/image.h"

namespace {

void check(const lra::Split& s) {
  using lra::fuzz::require;
  require(s.offsets.size() == s.size() + 1 && s.offsets.back() == s.tokens.size() &&
              s.tokens.size() == s.size() * lra::image::kCifarLength,
          "a CIFAR-10 split holds 1024 tokens per label");
  for (int32_t label : s.labels) require(label >= 0 && label < lra::image::kNumClasses, "labels are 0..9");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  fuzz::expect_error([&] {
    Split s;
    image::decode_cifar_batch(bytes, "data_batch_1.bin", s);
    check(s);
  });

  const auto dir = fuzz::scratch();
  const std::string archive = fuzz::write(dir / "cifar-10-binary.tar.gz", bytes);
  fuzz::expect_error([&] {
    const image::Parsed p = image::read_cifar_archive(archive);
    check(p.train);
    check(p.test);
  });

  const char* const names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                               "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 6);
  if (parts.size() < 6) return 0;  // a folder needs all six; the archive above had this input
  for (size_t k = 0; k < 6; ++k) fuzz::write(dir / "cifar-10-batches-bin" / names[k], parts[k]);
  fuzz::expect_error([&] {
    const image::Parsed p = image::read_cifar_folder((dir / "cifar-10-batches-bin").string());
    check(p.train);
    check(p.test);
  });
  return 0;
}
