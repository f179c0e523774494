// CIFAR-10's binary batches (folder or cifar-10-binary.tar.gz) into grayscale tokens exactly as
// LRA's tf.image.rgb_to_grayscale computes them (see image.h for the format and the formula).
#include <array>
#include <filesystem>

#include "core/check.h"
#include "core/files.h"
#include "tasks/common/archive.h"
#include "tasks/image/image.h"

namespace lra::image {

namespace fs = std::filesystem;

namespace {

constexpr std::array<const char*, 6> kBatches = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                                 "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};

// The three float32 products w_c * (float32(c) * float32(1/255)), tabulated per channel value: each
// product is rounded to float32 as in TensorFlow, and only the two additions are left to do per
// pixel, so no compiler can fuse a product into an addition (FMA) and change the last bit.
struct GrayTables {
  std::array<float, 256> r{}, g{}, b{};
  GrayTables() {
    const float scale = static_cast<float>(1.0 / 255.0);
    for (int c = 0; c < 256; ++c) {
      const float f = static_cast<float>(c) * scale;
      r[static_cast<size_t>(c)] = 0.2989f * f;
      g[static_cast<size_t>(c)] = 0.5870f * f;
      b[static_cast<size_t>(c)] = 0.1140f * f;
    }
  }
};

const GrayTables& tables() {
  static const GrayTables t;
  return t;
}

uint8_t gray(const GrayTables& t, uint8_t r, uint8_t g, uint8_t b) {
  const float sum = (t.r[r] + t.g[g]) + t.b[b];
  // convert_image_dtype to uint8: multiply by 255 + 0.5 and cast (truncate); the sum is at most
  // 0.9999, so the value stays below 256.
  const float scaled = sum * 255.5f;
  return scaled <= 0.0f ? 0 : scaled >= 255.0f ? 255 : static_cast<uint8_t>(scaled);
}

}  // namespace

uint8_t tf_grayscale(uint8_t r, uint8_t g, uint8_t b) { return gray(tables(), r, g, b); }

void decode_cifar_batch(const std::string& bytes, const std::string& name, Split& out) {
  LRA_CHECK(!bytes.empty() && bytes.size() % kCifarRecordBytes == 0,
            "the CIFAR-10 batch '{}' holds {} bytes, not a whole number of {}-byte records (a label byte and "
            "3 x 1024 pixels; the released files hold 10,000 records, 30,730,000 bytes): the file is truncated "
            "or not a CIFAR-10 binary batch; download cifar-10-binary.tar.gz again",
            name, bytes.size(), kCifarRecordBytes);
  const GrayTables& t = tables();
  const size_t n = bytes.size() / kCifarRecordBytes;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t at = out.tokens.size();
  out.tokens.resize(at + n * kCifarLength);
  out.offsets.reserve(out.offsets.size() + n);
  out.labels.reserve(out.labels.size() + n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* rec = p + i * kCifarRecordBytes;
    LRA_CHECK(rec[0] < kNumClasses, "the CIFAR-10 batch '{}', record {} (0-based, at byte {}), has label {}; labels "
              "are 0..9: the file is damaged or not a CIFAR-10 binary batch",
              name, i, i * kCifarRecordBytes, rec[0]);
    const uint8_t* red = rec + 1;
    const uint8_t* green = red + kCifarLength;
    const uint8_t* blue = green + kCifarLength;
    uint16_t* dst = out.tokens.data() + at + i * kCifarLength;
    for (int j = 0; j < kCifarLength; ++j) dst[j] = gray(t, red[j], green[j], blue[j]);
    out.offsets.push_back(at + (i + 1) * kCifarLength);
    out.labels.push_back(rec[0]);
    out.origins.add(name, "record", static_cast<int64_t>(i));
  }
}

Parsed read_cifar_folder(const std::string& dir) {
  Parsed out;
  for (size_t k = 0; k < kBatches.size(); ++k) {
    const fs::path p = fs::path(dir) / kBatches[k];
    std::error_code ec;
    LRA_CHECK(fs::is_regular_file(p, ec),
              "the CIFAR-10 folder '{}' has no {} ('{}' is missing); it needs data_batch_1..5.bin and "
              "test_batch.bin: extract cifar-10-binary.tar.gz again",
              dir, kBatches[k], p.string());
    decode_cifar_batch(read_file(p.string()), p.string(), k < 5 ? out.train : out.test);
  }
  return out;
}

Parsed read_cifar_archive(const std::string& path) {
  std::array<std::string, kBatches.size()> contents;
  std::array<bool, kBatches.size()> seen{};
  auto index_of = [](const std::string& member) -> int {
    const auto parts = path_components(member);
    if (parts.empty()) return -1;
    for (size_t k = 0; k < kBatches.size(); ++k)
      if (parts.back() == kBatches[k]) return static_cast<int>(k);
    return -1;
  };
  for_each_archive_file(
      path, [&](const std::string& member) { return index_of(member) >= 0; },
      [&](const std::string& member, std::string& data) {
        const auto k = static_cast<size_t>(index_of(member));
        LRA_CHECK(!seen[k], "the archive '{}' holds {} twice; use the released cifar-10-binary.tar.gz", path,
                  kBatches[k]);
        seen[k] = true;
        contents[k] = std::move(data);
      });
  Parsed out;
  for (size_t k = 0; k < kBatches.size(); ++k) {
    LRA_CHECK(seen[k],
              "the archive '{}' has no {}; it is not a complete cifar-10-binary.tar.gz (the binary version, with "
              "cifar-10-batches-bin/): download it again",
              path, kBatches[k]);
    decode_cifar_batch(contents[k], path + ":" + kBatches[k], k < 5 ? out.train : out.test);
    contents[k] = std::string();
  }
  return out;
}

}  // namespace lra::image
