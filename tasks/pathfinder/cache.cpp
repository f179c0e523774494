// The on-disk cache of generated Pathfinder images (layout in pathfinder.h): a small header that
// names what the file holds, the three splits as raw bytes, and an FNV-1a-64 digest at the end, so a
// short, damaged or foreign file is recognised and regenerated rather than trusted.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/check.h"
#include "core/digest.h"
#include "core/files.h"
#include "tasks/pathfinder/pathfinder.h"

namespace lra::pathfinder {

namespace {

constexpr char kMagic[8] = {'L', 'R', 'A', 'P', 'A', 'T', 'H', 'F'};
constexpr uint32_t kFormatVersion = 1;
// Bumped whenever the generator's output changes, so older caches are regenerated.
constexpr uint32_t kGeneratorVersion = 1;
constexpr size_t kHeaderBytes = 8 + 4 * 4 + 8 * 4;
constexpr size_t kChunk = size_t{1} << 22;

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv(uint64_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
  return h;
}

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}
uint64_t get_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string header(uint64_t seed, const Params& p, const uint64_t counts[3]) {
  std::string h(kMagic, sizeof kMagic);
  put_u32(h, kFormatVersion);
  put_u32(h, static_cast<uint32_t>(p.resolution));
  put_u32(h, static_cast<uint32_t>(p.contour_length));
  put_u32(h, kGeneratorVersion);
  put_u64(h, seed);
  for (int s = 0; s < 3; ++s) put_u64(h, counts[s]);
  return h;
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

std::string write_cache(const std::string& path, uint64_t seed, const Dataset& d) {
  const ImageSet* sets[3] = {&d.train, &d.val, &d.test};
  const uint64_t counts[3] = {d.train.size(), d.val.size(), d.test.size()};
  AtomicFile f(path);
  uint64_t h = kFnvOffset;  // the file's own integrity check, its last 8 bytes
  Digest sha("sha256");     // what the run record names it by
  auto write = [&](const void* data, size_t bytes) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t off = 0; off < bytes; off += kChunk) {
      const size_t n = std::min(kChunk, bytes - off);
      h = fnv(h, p + off, n);
      sha.add(p + off, n);
      f.write(p + off, n);
    }
  };
  const std::string head = header(seed, d.params, counts);
  write(head.data(), head.size());
  for (const ImageSet* s : sets) {
    std::vector<uint8_t> labels(s->labels.begin(), s->labels.end());
    write(labels.data(), labels.size());
    write(s->margins.data(), s->margins.size());
    write(s->pixels.data(), s->pixels.size());
  }
  std::string tail;
  put_u64(tail, h);
  f.write(tail.data(), tail.size());
  f.commit();
  sha.add(tail.data(), tail.size());
  return "sha256:" + sha.hex();
}

bool read_cache(const std::string& path, uint64_t seed, const Params& p, const SplitSizes& sizes, Dataset& d,
                std::string& reason, std::string& checksum) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    reason = "no cache file";
    return false;
  }
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    reason = fmt::format("cannot open it: {}", std::strerror(errno));
    return false;
  }
  const uint64_t counts[3] = {static_cast<uint64_t>(sizes.train), static_cast<uint64_t>(sizes.val),
                              static_cast<uint64_t>(sizes.test)};
  const size_t area = static_cast<size_t>(p.resolution) * static_cast<size_t>(p.resolution);
  uint64_t expected_bytes = kHeaderBytes + 8;
  for (uint64_t n : counts) expected_bytes += n * (2 + area);
  const auto bytes = std::filesystem::file_size(path, ec);
  if (ec) {
    reason = fmt::format("cannot read its size: {}", ec.message());
    return false;
  }
  uint8_t head[kHeaderBytes];
  if (bytes < kHeaderBytes || std::fread(head, 1, kHeaderBytes, f.get()) != kHeaderBytes) {
    reason = fmt::format("it is too short ({} bytes) to hold a header", bytes);
    return false;
  }
  if (std::memcmp(head, kMagic, sizeof kMagic) != 0) {
    reason = "it does not start with the magic \"LRAPATHF\"";
    return false;
  }
  const std::string want = header(seed, p, counts);
  if (get_le(head + 8, 4) != kFormatVersion || get_le(head + 20, 4) != kGeneratorVersion) {
    reason = fmt::format("it was written by another version (format {}, generator {}; this build writes {}, {})",
                         get_le(head + 8, 4), get_le(head + 20, 4), kFormatVersion, kGeneratorVersion);
    return false;
  }
  if (std::memcmp(head, want.data(), kHeaderBytes) != 0) {
    reason = fmt::format(
        "its header names other data (resolution {}, contour length {}, seed {}, {}/{}/{} images) than wanted "
        "(resolution {}, contour length {}, seed {}, {}/{}/{})",
        get_le(head + 12, 4), get_le(head + 16, 4), get_le(head + 24, 8), get_le(head + 32, 8), get_le(head + 40, 8),
        get_le(head + 48, 8), p.resolution, p.contour_length, seed, counts[0], counts[1], counts[2]);
    return false;
  }
  if (bytes != expected_bytes) {
    reason =
        fmt::format("it has {} bytes where its header implies {} (a truncated or damaged file)", bytes, expected_bytes);
    return false;
  }
  uint64_t h = fnv(kFnvOffset, head, kHeaderBytes);
  Digest sha("sha256");
  sha.add(head, kHeaderBytes);
  bool short_read = false;
  auto read = [&](void* data, size_t n) {
    auto* q = static_cast<uint8_t*>(data);
    for (size_t off = 0; off < n && !short_read; off += kChunk) {
      const size_t k = std::min(kChunk, n - off);
      if (std::fread(q + off, 1, k, f.get()) != k) short_read = true;
      h = fnv(h, q + off, k);
      sha.add(q + off, k);
    }
  };
  d = Dataset();
  d.params = p;
  ImageSet* sets[3] = {&d.train, &d.val, &d.test};
  std::vector<uint8_t> labels;
  for (int s = 0; s < 3; ++s) {
    const size_t n = static_cast<size_t>(counts[s]);
    ImageSet& set = *sets[s];
    set.resolution = p.resolution;
    labels.resize(n);
    read(labels.data(), n);
    set.labels.assign(labels.begin(), labels.end());
    set.margins.resize(n);
    read(set.margins.data(), n);
    set.pixels.resize(n * area);
    read(set.pixels.data(), set.pixels.size());
  }
  uint8_t tail[8];
  if (short_read || std::fread(tail, 1, 8, f.get()) != 8) {
    reason = "it ended early while being read";
    return false;
  }
  if (get_le(tail, 8) != h) {
    reason = "its digest does not match its contents (a damaged file)";
    return false;
  }
  for (const ImageSet* s : sets)
    for (int32_t l : s->labels)
      if (l != 0 && l != 1) {
        reason = fmt::format("it holds a label {} (labels are 0 or 1)", l);
        return false;
      }
  sha.add(tail, 8);
  checksum = "sha256:" + sha.hex();
  return true;
}

}  // namespace lra::pathfinder
