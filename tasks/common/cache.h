// A compact binary cache of parsed splits, so that a second run skips reading, decompressing and
// decoding the source files. Any task can use it: a reader builds named Splits once and stores them
// under a key that names its sources (their checksums) and its preprocessing settings; a later run
// with the same key reads them back in a fraction of a second, and a cache built from other sources
// or settings, or damaged, is detected and rebuilt.
//
// File layout (all integers little-endian; the cache is refused on a big-endian host):
//   "LRACACHE"                 8 bytes, magic
//   u32 version                kVersion; another version is rebuilt
//   u32 header_bytes
//   header                     JSON: {"key": ..., "meta": {...}, "splits": [{"name", "examples", "docs"
//                              (documents per example), "tokens", "token_bytes" (1 or 2),
//                              "zero_is_padding", "origins" (Split::origins, when known: {"sources",
//                              "units", "source", "item"})}, ...]}
//   per split, in header order:
//     u32 lengths[examples * docs]  tokens per document
//     i32 labels[examples]
//     tokens[tokens]           u8 when every id fits (token_bytes 1), else u16
//   u64 digest                 kDigest over every byte before it
// The file is written to a temporary and renamed into place (AtomicFile), so an interrupted write
// never leaves a cache that looks complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tasks/task.h"

namespace lra::cache {

constexpr uint32_t kVersion = 2;  // 2: splits keep their examples' origins

// An incremental 64-bit FNV-1a over bytes, for keys and for digests of many small source files.
class Digest {
 public:
  void add(const void* data, size_t bytes);
  // A string followed by a 0 byte, so that ("ab", "c") and ("a", "bc") differ.
  void add_field(std::string_view s);
  uint64_t value() const { return h_; }
  // "fnv1a64:" and 16 hex digits, the spelling of core/files.h's file_checksum.
  std::string hex() const;

 private:
  uint64_t h_ = 1469598103934665603ull;
};

// What a cache file holds besides its key.
struct Entry {
  nlohmann::json meta = nlohmann::json::object();  // the reader's own facts, e.g. source checksums
  std::vector<std::pair<std::string, Split>> splits;
  // The split called `name`; throws when there is none.
  const Split& split(const std::string& name) const;
  Split& split(const std::string& name);
};

// <cache_dir or default_cache_dir()>/<task>/<name>.lracache
std::string cache_file(const DataOptions& opt, const std::string& task, const std::string& name);

// Writes `entry` under `key` through a temporary file and a rename.
void write(const std::string& path, const std::string& key, const Entry& entry);

enum class Status { Missing, Reused, Stale, Corrupt };

struct ReadResult {
  Status status = Status::Missing;
  std::string reason;  // why a Stale or Corrupt file cannot be used
  Entry entry;         // filled when Reused
};

// Reads `path` when it exists, is intact and was built for `key`; otherwise says why not.
ReadResult read(const std::string& path, const std::string& key);

struct Loaded {
  Entry entry;
  std::string file;    // the cache file
  std::string status;  // "reused", "built" or "rebuilt" (a stale or corrupt file was replaced)
  // {"file": ..., "status": ...} for the run record.
  nlohmann::json to_json() const;
};

// The cached entry for `key` at `path`, or build() written there first. `what` names the data in
// messages. A stale or corrupt cache is reported on stderr (always) and rebuilt; reuse and writing
// are reported unless quiet. A cache that cannot be written costs only the next run's time, so that
// is reported as a warning and the built data is returned.
Loaded load_or_build(const std::string& path, const std::string& key, const std::string& what, bool quiet,
                     const std::function<Entry()>& build);

// Cached splits hold whole documents, so that changing max_length needs no rebuild: this cuts every
// document of `s` to at most max_length tokens in place (no second copy of a large split).
void truncate_in_place(Split& s, int max_length);

}  // namespace lra::cache
