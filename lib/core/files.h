// Files: written atomically (a temporary in the same folder, renamed into place), read whole, checksummed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace lra {

// A file written through a temporary in the same folder and renamed into place by commit(), so a
// reader never sees a half-written file and an existing file survives a failed write (full disk,
// interruption): without commit() the temporary is removed and `path` is left as it was.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t bytes);
  void commit();

 private:
  [[noreturn]] void fail(int err);
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

void write_file_atomic(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);
// Creates a folder and its parents; throws with the path and the reason on failure.
void make_dirs(const std::string& path);

// FNV-1a 64-bit, fed in pieces: the checksum of records, checkpoints and the names of grid cells.
struct Fnv1a64 {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= 1099511628211ull;
    }
  }
};

// A file's digest in hex, by OpenSSL's name for the algorithm ("sha256", "md5").
std::string file_digest(const std::string& path, const std::string& algorithm);
// "sha256:<hex>": the checksum run records give the data files they read, comparable with the SHA-256
// that download pages and TFDS publish.
std::string file_checksum(const std::string& path);

}  // namespace lra
