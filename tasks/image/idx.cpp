// Fashion-MNIST's IDX files (gzip-compressed, read through zlib) into pixel tokens and labels (see
// image.h for the format: big-endian magic and dimensions, then uint8 data).
#include <array>
#include <filesystem>

#include "core/check.h"
#include "tasks/common/archive.h"
#include "tasks/image/image.h"

namespace lra::image {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

uint32_t big_endian_u32(const std::string& bytes, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + at;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// `stem` with ".gz" when that file exists, else without (already decompressed); "" when neither.
std::string existing(const fs::path& dir, const std::string& stem) {
  std::error_code ec;
  for (const std::string& name : {stem + ".gz", stem})
    if (fs::is_regular_file(dir / name, ec)) return (dir / name).string();
  return "";
}

Split read_pair(const fs::path& dir, const std::string& images_stem, const std::string& labels_stem) {
  const std::string images_path = existing(dir, images_stem), labels_path = existing(dir, labels_stem);
  LRA_CHECK(!images_path.empty(), "the Fashion-MNIST folder '{}' has no {}.gz; it needs {{train,t10k}}-images-idx3-"
            "ubyte.gz and {{train,t10k}}-labels-idx1-ubyte.gz", dir.string(), images_stem);
  LRA_CHECK(!labels_path.empty(), "the Fashion-MNIST folder '{}' has no {}.gz; it needs {{train,t10k}}-images-idx3-"
            "ubyte.gz and {{train,t10k}}-labels-idx1-ubyte.gz", dir.string(), labels_stem);
  std::vector<uint32_t> image_dims, label_dims;
  const std::vector<uint8_t> pixels = parse_idx(read_gzip(images_path), images_path, kImagesMagic, image_dims);
  const std::vector<uint8_t> labels = parse_idx(read_gzip(labels_path), labels_path, kLabelsMagic, label_dims);
  LRA_CHECK(image_dims.size() == 3 && image_dims[1] == 28 && image_dims[2] == 28,
            "the IDX file '{}' holds images of {} dimensions ({}...), not N x 28 x 28 as Fashion-MNIST does",
            images_path, image_dims.size(), image_dims.empty() ? 0 : image_dims[0]);
  LRA_CHECK(label_dims.size() == 1, "the IDX file '{}' has {} dimensions; a label file has one", labels_path,
            label_dims.size());
  LRA_CHECK(image_dims[0] == label_dims[0],
            "size mismatch: '{}' holds {} images but '{}' holds {} labels; the two files must come from the same "
            "release",
            images_path, image_dims[0], labels_path, label_dims[0]);
  Split s;
  const size_t n = image_dims[0];
  s.tokens.assign(pixels.begin(), pixels.end());
  s.offsets.resize(n + 1);
  for (size_t i = 0; i <= n; ++i) s.offsets[i] = i * kFashionLength;
  s.labels.resize(n);
  for (size_t i = 0; i < n; ++i) {
    LRA_CHECK(labels[i] < kNumClasses, "the IDX label file '{}', label {} (0-based) is {}; labels are 0..9",
              labels_path, i, labels[i]);
    s.labels[i] = labels[i];
    s.origins.add(images_path, "record", static_cast<int64_t>(i));
  }
  return s;
}

}  // namespace

std::vector<uint8_t> parse_idx(const std::string& bytes, const std::string& path, uint32_t magic,
                               std::vector<uint32_t>& dims) {
  LRA_CHECK(bytes.size() >= 4, "the IDX file '{}' is {} bytes long, too short for a header; download it again", path,
            bytes.size());
  const uint32_t found = big_endian_u32(bytes, 0);
  LRA_CHECK(found == magic,
            "the IDX file '{}' starts with magic number 0x{:08x}, expected 0x{:08x} ({} of unsigned bytes); is it "
            "the right file, gunzipped correctly?",
            path, found, magic, magic == kImagesMagic ? "images" : "labels");
  const size_t rank = magic & 0xFF;
  LRA_CHECK(bytes.size() >= 4 + 4 * rank, "the IDX file '{}' ends inside its header; download it again", path);
  dims.assign(rank, 0);
  uint64_t total = 1;
  bool overflow = false;  // three u32 dimensions can multiply past 2^64 and wrap to the data's size
  for (size_t d = 0; d < rank; ++d) {
    dims[d] = big_endian_u32(bytes, 4 + 4 * d);
    overflow = __builtin_mul_overflow(total, uint64_t{dims[d]}, &total) || overflow;
  }
  LRA_CHECK(!overflow, "the IDX file '{}' has a header whose dimensions multiply past 2^64 elements; the file is "
            "damaged: download it again", path);
  const size_t header = 4 + 4 * rank;
  LRA_CHECK(bytes.size() - header == total,
            "the IDX file '{}' holds {} data bytes but its header ({}) needs {}: the file is {}; download it again",
            path, bytes.size() - header,
            [&] {
              std::string s;
              for (size_t d = 0; d < rank; ++d) s += (d ? " x " : "") + std::to_string(dims[d]);
              return s;
            }(),
            total, bytes.size() - header < total ? "truncated" : "longer than its header says");
  return std::vector<uint8_t>(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
}

Parsed read_fashion_mnist(const std::string& dir) {
  Parsed out;
  out.train = read_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte");
  out.test = read_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
  return out;
}

}  // namespace lra::image
