#include "train/checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "core/files.h"

namespace lra {

namespace {
constexpr char kMagic[8] = {'L', 'R', 'A', 'C', 'K', 'P', 'T', '1'};
}  // namespace

void save_checkpoint(const std::string& path, const nlohmann::json& meta, const float* params, const float* m,
                     const float* v, int64_t n) {
  AtomicFile f(path);
  Fnv1a64 sum;
  auto put = [&](const void* data, size_t bytes) {
    f.write(data, bytes);
    sum.add(data, bytes);
  };
  const std::string text = meta.dump();
  const uint64_t len = text.size(), count = static_cast<uint64_t>(n);
  put(kMagic, sizeof kMagic);
  put(&len, sizeof len);
  put(text.data(), text.size());
  put(&count, sizeof count);
  for (const float* a : {params, m, v}) put(a, sizeof(float) * count);
  f.write(&sum.h, sizeof sum.h);
  f.commit();
}

namespace {

// The bytes a checkpoint file holds, so that no size read from it is trusted beyond them.
uint64_t file_bytes(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  LRA_CHECK(!ec, "cannot read checkpoint '{}': {}", path, ec.message());
  return static_cast<uint64_t>(n);
}

// Reads a checkpoint's header and metadata from `in` (a file of `file_size` bytes), feeding every byte to `sum`.
nlohmann::json read_meta(std::ifstream& in, const std::string& path, uint64_t file_size, Fnv1a64& sum) {
  auto get = [&](void* data, size_t bytes) {
    in.read(static_cast<char*>(data), static_cast<std::streamsize>(bytes));
    LRA_CHECK(static_cast<size_t>(in.gcount()) == bytes, "checkpoint '{}' is truncated (in its metadata)", path);
    sum.add(data, bytes);
  };
  char magic[8];
  get(magic, sizeof magic);
  LRA_CHECK(std::memcmp(magic, kMagic, sizeof magic) == 0, "'{}' is not an lra checkpoint", path);
  uint64_t len = 0;
  get(&len, sizeof len);
  LRA_CHECK(len <= file_size - sizeof kMagic - sizeof len,
            "checkpoint '{}' is corrupt: its metadata length {} exceeds the file's {} bytes", path, len, file_size);
  std::string text(len, '\0');
  get(text.data(), len);
  nlohmann::json meta = nlohmann::json::parse(text, nullptr, false);
  LRA_CHECK(!meta.is_discarded(), "checkpoint '{}' has corrupt metadata", path);
  return meta;
}

std::ifstream open_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LRA_CHECK(in.good(), "cannot open checkpoint '{}': {}", path, std::strerror(errno));
  return in;
}

}  // namespace

nlohmann::json load_checkpoint_meta(const std::string& path) {
  std::ifstream in = open_checkpoint(path);
  Fnv1a64 sum;
  return read_meta(in, path, file_bytes(path), sum);
}

std::string checkpoint_folder(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return dir.empty() ? std::string(".") : dir.string();
}

Checkpoint load_checkpoint(const std::string& path) {
  std::ifstream in = open_checkpoint(path);
  Fnv1a64 sum;
  Checkpoint c;
  const uint64_t file_size = file_bytes(path);
  c.meta = read_meta(in, path, file_size, sum);
  auto get = [&](void* data, size_t bytes) {
    in.read(static_cast<char*>(data), static_cast<std::streamsize>(bytes));
    LRA_CHECK(static_cast<size_t>(in.gcount()) == bytes, "checkpoint '{}' is truncated (in its tensors)", path);
    sum.add(data, bytes);
  };
  uint64_t n = 0;
  get(&n, sizeof n);
  const uint64_t left = file_size - static_cast<uint64_t>(in.tellg());
  LRA_CHECK(n <= left / (3 * sizeof(float)),
            "checkpoint '{}' is corrupt: it declares {} parameters but {} bytes remain for their values and moments",
            path, n, left);
  for (auto* a : {&c.params, &c.m, &c.v}) {
    a->resize(n);
    get(a->data(), sizeof(float) * n);
  }
  uint64_t stored = 0;
  in.read(reinterpret_cast<char*>(&stored), sizeof stored);
  LRA_CHECK(static_cast<size_t>(in.gcount()) == sizeof stored && stored == sum.h,
            "checkpoint '{}' is corrupt (checksum mismatch)", path);
  return c;
}

}  // namespace lra
