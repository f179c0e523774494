// Fashion-MNIST's IDX files (Image): the input split into train images, train labels, t10k images and
// t10k labels (the train pair again when there are only two parts), each written gzip-compressed or not
// as it comes, for read_fashion_mnist (read_gzip, parse_idx, the pairing checks); and each part, through
// read_gzip, for parse_idx with both magic numbers.
#include "fuzz/fuzz_util.h"
#include "tasks/common/archive.h"
#include "tasks/image/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const auto dir = fuzz::scratch();
  std::vector<std::string> parts = fuzz::split_parts(data, size, 4);
  const std::vector<std::string> files = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  for (size_t k = 0; k < parts.size(); ++k) {
    const std::string& p = parts[k];
    const bool gzip = p.size() >= 2 && p[0] == '\x1f' && p[1] == '\x8b';
    const std::string path = fuzz::write(dir / (std::to_string(k) + ".idx"), p);
    for (uint32_t magic : {0x803u, 0x801u})
      fuzz::expect_error([&] {
        std::vector<uint32_t> dims;
        const std::vector<uint8_t> values = image::parse_idx(read_gzip(path), path, magic, dims);
        uint64_t total = 1;
        bool overflow = false;
        for (uint32_t d : dims) overflow = __builtin_mul_overflow(total, d, &total) || overflow;
        fuzz::require(dims.size() == (magic & 0xFF) && !overflow && total == values.size(),
                      "parse_idx returns the product of its dimensions in bytes");
      });
    for (size_t f = k; f < files.size(); f += 2)
      if (parts.size() == 2 || f == k) fuzz::write(dir / "fashion" / (files[f] + (gzip ? ".gz" : "")), p);
  }
  fuzz::expect_error([&] {
    const image::Parsed p = image::read_fashion_mnist((dir / "fashion").string());
    for (const Split* s : {&p.train, &p.test}) {
      fuzz::require(s->offsets.size() == s->size() + 1 && s->offsets.back() == s->tokens.size() &&
                        s->tokens.size() == s->size() * image::kFashionLength,
                    "a Fashion-MNIST split holds 784 tokens per label");
      for (int32_t label : s->labels) fuzz::require(label >= 0 && label < image::kNumClasses, "labels are 0..9");
    }
  });
  return 0;
}
