// The parsed-data cache (layout in cache.h). The body digest is a multiply-xor hash over 8-byte
// words (a few GB/s), so verifying a 100 MB cache costs tens of milliseconds; it guards against
// truncated and damaged files, not against tampering.
#include "tasks/common/cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"

namespace lra::cache {

namespace fs = std::filesystem;

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the data cache stores little-endian integers as they are in memory; port cache.cpp first"
#endif

namespace {

constexpr char kMagic[8] = {'L', 'R', 'A', 'C', 'A', 'C', 'H', 'E'};
constexpr size_t kFixedBytes = sizeof kMagic + 4 + 4;  // magic, version, header_bytes
constexpr size_t kChunkTokens = size_t{1} << 18;

// kDigest of cache.h: a pure function of the byte stream, however it is split into add() calls.
class BodyHash {
 public:
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    total_ += n;
    while (n > 0) {
      if (pending_ == 0 && n >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        mix(w);
        p += 8;
        n -= 8;
        continue;
      }
      const size_t take = std::min(n, sizeof buf_ - pending_);
      std::memcpy(buf_ + pending_, p, take);
      pending_ += take;
      p += take;
      n -= take;
      if (pending_ == sizeof buf_) mix_buffer();
    }
  }
  uint64_t finish() {
    if (pending_ > 0) {
      std::fill(buf_ + pending_, buf_ + 8, 0);
      mix_buffer();
    }
    mix(total_);
    return h_;
  }

 private:
  void mix(uint64_t w) {
    h_ = (h_ ^ w) * 0x9E3779B97F4A7C15ull;
    h_ ^= h_ >> 29;
  }
  void mix_buffer() {
    uint64_t w;
    std::memcpy(&w, buf_, 8);
    mix(w);
    pending_ = 0;
  }
  uint64_t h_ = 0x243F6A8885A308D3ull, total_ = 0;
  unsigned char buf_[8] = {};
  size_t pending_ = 0;
};

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

// Reads exactly `n` bytes into `out` and hashes them; false at the end of the file.
bool read_exact(FILE* f, void* out, size_t n, BodyHash& h) {
  if (n == 0) return true;
  if (std::fread(out, 1, n, f) != n) return false;
  h.add(out, n);
  return true;
}

int token_bytes_for(const Split& s) {
  return std::any_of(s.tokens.begin(), s.tokens.end(), [](uint16_t t) { return t > 0xFF; }) ? 2 : 1;
}

}  // namespace

void Digest::add(const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h_ ^= p[i];
    h_ *= 1099511628211ull;
  }
}

void Digest::add_field(std::string_view s) {
  add(s.data(), s.size());
  const unsigned char zero = 0;
  add(&zero, 1);
}

std::string Digest::hex() const { return fmt::format("fnv1a64:{:016x}", h_); }

const Split& Entry::split(const std::string& name) const {
  for (const auto& [n, s] : splits)
    if (n == name) return s;
  LRA_FAIL("the cached data has no split '{}'", name);
}

Split& Entry::split(const std::string& name) {
  return const_cast<Split&>(static_cast<const Entry&>(*this).split(name));
}

std::string cache_file(const DataOptions& opt, const std::string& task, const std::string& name) {
  const std::string root = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  return (fs::path(root) / task / (name + ".lracache")).string();
}

void write(const std::string& path, const std::string& key, const Entry& entry) {
  nlohmann::json header;
  header["key"] = key;
  header["meta"] = entry.meta;
  header["splits"] = nlohmann::json::array();
  std::vector<int> widths;
  for (const auto& [name, s] : entry.splits) {
    LRA_CHECK(s.docs >= 1 && s.offsets.size() == s.size() * static_cast<size_t>(s.docs) + 1 &&
                  s.offsets.back() == s.tokens.size(),
              "split '{}' is inconsistent ({} labels of {} document(s), {} offsets, {} tokens); it cannot be cached",
              name, s.size(), s.docs, s.offsets.size(), s.tokens.size());
    widths.push_back(token_bytes_for(s));
    nlohmann::json sh = {{"name", name},
                         {"examples", s.size()},
                         {"docs", s.docs},
                         {"tokens", s.tokens.size()},
                         {"token_bytes", widths.back()},
                         {"zero_is_padding", s.zero_is_padding}};
    if (s.origins.source.size() == s.size() && !s.origins.empty())
      sh["origins"] = {{"sources", s.origins.sources},
                       {"units", s.origins.units},
                       {"source", s.origins.source},
                       {"item", s.origins.item}};
    header["splits"].push_back(std::move(sh));
  }
  const std::string text = header.dump();
  AtomicFile f(path);
  BodyHash h;
  auto put = [&](const void* data, size_t n) {
    f.write(data, n);
    h.add(data, n);
  };
  const uint32_t version = kVersion, header_bytes = static_cast<uint32_t>(text.size());
  put(kMagic, sizeof kMagic);
  put(&version, 4);
  put(&header_bytes, 4);
  put(text.data(), text.size());
  std::vector<uint32_t> lengths;
  std::vector<uint8_t> narrow;
  for (size_t k = 0; k < entry.splits.size(); ++k) {
    const Split& s = entry.splits[k].second;
    lengths.resize(s.num_docs());
    for (size_t d = 0; d < s.num_docs(); ++d) lengths[d] = static_cast<uint32_t>(s.length(d));
    put(lengths.data(), lengths.size() * 4);
    put(s.labels.data(), s.labels.size() * 4);
    if (widths[k] == 2) {
      put(s.tokens.data(), s.tokens.size() * 2);
    } else {
      narrow.assign(s.tokens.begin(), s.tokens.end());
      put(narrow.data(), narrow.size());
    }
  }
  const uint64_t digest = h.finish();
  f.write(&digest, 8);
  f.commit();
}

ReadResult read(const std::string& path, const std::string& key) {
  ReadResult r;
  std::error_code ec;
  if (!fs::exists(path, ec)) return r;
  auto corrupt = [&](const std::string& why) {
    r.status = Status::Corrupt;
    r.reason = why;
    r.entry = Entry{};
    return r;
  };
  const uintmax_t file_bytes = fs::file_size(path, ec);
  if (ec) return corrupt(fmt::format("cannot stat it: {}", ec.message()));
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (f == nullptr) return corrupt(fmt::format("cannot open it: {}", std::strerror(errno)));
  BodyHash h;
  char magic[8];
  uint32_t version = 0, header_bytes = 0;
  if (!read_exact(f.get(), magic, 8, h) || std::memcmp(magic, kMagic, 8) != 0)
    return corrupt("it does not start with LRACACHE");
  if (!read_exact(f.get(), &version, 4, h) || !read_exact(f.get(), &header_bytes, 4, h))
    return corrupt("it ends inside its header");
  if (version != kVersion) {
    r.status = Status::Stale;
    r.reason = fmt::format("it has format version {}, this build writes {}", version, kVersion);
    return r;
  }
  if (header_bytes > file_bytes - kFixedBytes) return corrupt("its header length exceeds the file");
  std::string text(header_bytes, '\0');
  if (!read_exact(f.get(), text.data(), header_bytes, h)) return corrupt("it ends inside its header");
  const nlohmann::json header = nlohmann::json::parse(text, nullptr, false);
  if (header.is_discarded() || !header.is_object() || !header.contains("key") || !header["key"].is_string() ||
      !header.contains("splits") || !header["splits"].is_array())
    return corrupt("its header is not the expected JSON");
  if (header["key"].get<std::string>() != key) {
    r.status = Status::Stale;
    r.reason = "it was built from other source files or settings";
    return r;
  }
  // The sizes the header declares must add up to the file's size before anything is allocated.
  uintmax_t expected = kFixedBytes + header_bytes + 8;
  for (const auto& s : header["splits"]) {
    // Read as integers only when they are integers: converting a float out of range is undefined.
    for (const char* field : {"examples", "tokens", "docs", "token_bytes"})
      if (!s.is_object() || !s.contains(field) || !s[field].is_number_unsigned())
        return corrupt(fmt::format("its header's '{}' of a split is not a non-negative integer", field));
    if ((s.contains("name") && !s["name"].is_string()) ||
        (s.contains("zero_is_padding") && !s["zero_is_padding"].is_boolean()))
      return corrupt("its header is not the expected JSON");
    const uintmax_t n = s["examples"].get<uint64_t>(), t = s["tokens"].get<uint64_t>();
    const uintmax_t docs = s["docs"].get<uint64_t>(), w = s["token_bytes"].get<uint64_t>();
    if ((w != 1 && w != 2) || n > file_bytes || t > file_bytes || docs < 1 || docs > 2)
      return corrupt("its header declares bad sizes");
    expected += n * docs * 4 + n * 4 + t * w;
  }
  if (expected != file_bytes)
    return corrupt(fmt::format("it holds {} bytes but its header accounts for {} (truncated or padded)",
                               file_bytes, expected));
  if (header.contains("meta")) r.entry.meta = header["meta"];
  std::vector<uint32_t> lengths;
  std::vector<uint8_t> narrow;
  std::vector<uint16_t> wide;
  for (const auto& sh : header["splits"]) {
    const auto n = sh["examples"].get<size_t>(), t = sh["tokens"].get<size_t>();
    Split s;
    s.docs = sh["docs"].get<int>();
    s.zero_is_padding = sh.value("zero_is_padding", false);
    if (sh.contains("origins")) {
      try {
        const nlohmann::json& o = sh["origins"];
        for (const char* field : {"source", "item"})
          if (!o.at(field).is_array() ||
              !std::all_of(o[field].begin(), o[field].end(), [](const auto& v) { return v.is_number_integer(); }))
            return corrupt(fmt::format("the origins of split '{}' are not the expected JSON", sh["name"].dump()));
        o.at("sources").get_to(s.origins.sources);
        o.at("units").get_to(s.origins.units);
        o.at("source").get_to(s.origins.source);
        o.at("item").get_to(s.origins.item);
      } catch (const nlohmann::json::exception&) {
        return corrupt(fmt::format("the origins of split '{}' are not the expected JSON", sh["name"].dump()));
      }
      const bool whole = s.origins.source.size() == n && s.origins.item.size() == n &&
                         s.origins.units.size() == s.origins.sources.size() &&
                         std::all_of(s.origins.source.begin(), s.origins.source.end(),
                                     [&](uint32_t k) { return k < s.origins.sources.size(); });
      if (!whole) return corrupt(fmt::format("the origins of split '{}' do not match its examples", sh["name"].dump()));
    }
    const size_t docs = n * static_cast<size_t>(s.docs);
    lengths.resize(docs);
    s.labels.resize(n);
    bool ok = read_exact(f.get(), lengths.data(), docs * 4, h) && read_exact(f.get(), s.labels.data(), n * 4, h);
    // Tokens are appended in chunks rather than read into a zero-filled vector: first touches of
    // fresh memory dominate the cost of a large cache.
    const int width = sh["token_bytes"].get<int>();
    s.tokens.reserve(t);
    for (size_t done = 0; ok && done < t;) {
      const size_t count = std::min(t - done, kChunkTokens);
      if (width == 2) {
        wide.resize(count);
        ok = read_exact(f.get(), wide.data(), count * 2, h);
        s.tokens.insert(s.tokens.end(), wide.begin(), wide.end());
      } else {
        narrow.resize(count);
        ok = read_exact(f.get(), narrow.data(), count, h);
        s.tokens.insert(s.tokens.end(), narrow.begin(), narrow.end());
      }
      done += count;
    }
    if (!ok) return corrupt("it ends early");
    s.offsets.resize(docs + 1);
    uint64_t at = 0;
    for (size_t d = 0; d < docs; ++d) {
      s.offsets[d] = at;
      at += lengths[d];
    }
    s.offsets[docs] = at;
    if (at != t) return corrupt(fmt::format("the lengths of split '{}' do not add up to its tokens", sh["name"].dump()));
    r.entry.splits.emplace_back(sh.value("name", std::string()), std::move(s));
  }
  uint64_t stored = 0;
  const uint64_t digest = h.finish();
  if (std::fread(&stored, 1, 8, f.get()) != 8) return corrupt("it ends early");
  if (stored != digest) return corrupt("its digest does not match its contents (the file is damaged)");
  r.status = Status::Reused;
  return r;
}

void truncate_in_place(Split& s, int max_length) {
  LRA_CHECK(max_length > 0, "max_length must be positive, got {}", max_length);
  const auto limit = static_cast<uint64_t>(max_length);
  uint64_t w = 0;
  const size_t docs = s.num_docs();
  for (size_t d = 0; d < docs; ++d) {
    // offsets[d + 1] is still the original end of document d: only offsets[0..d] were rewritten.
    const uint64_t begin = s.offsets[d], len = std::min(s.offsets[d + 1] - begin, limit);
    if (w != begin) std::memmove(s.tokens.data() + w, s.tokens.data() + begin, len * sizeof(uint16_t));
    s.offsets[d] = w;
    w += len;
  }
  s.offsets[docs] = w;
  s.tokens.resize(w);
}

nlohmann::json Loaded::to_json() const { return {{"file", file}, {"status", status}}; }

Loaded load_or_build(const std::string& path, const std::string& key, const std::string& what, bool quiet,
                     const std::function<Entry()>& build) {
  Loaded out;
  out.file = path;
  ReadResult r = read(path, key);
  if (r.status == Status::Reused) {
    if (!quiet) fmt::print(stderr, "{}: using the cached parse in {}\n", what, path);
    out.entry = std::move(r.entry);
    out.status = "reused";
    return out;
  }
  if (r.status != Status::Missing)
    fmt::print(stderr, "{}: the cache file {} is {} ({}); rebuilding it\n", what, path,
               r.status == Status::Stale ? "stale" : "corrupt", r.reason);
  const Timer timer;
  out.entry = build();
  out.status = r.status == Status::Missing ? "built" : "rebuilt";
  try {
    write(path, key, out.entry);
    if (!quiet)
      fmt::print(stderr, "{}: read in {:.1f} s, cached in {} for the next run\n", what, timer.seconds(), path);
  } catch (const Error& e) {
    fmt::print(stderr, "warning: {}: could not write the cache ({}); the next run reads the sources again\n",
               what, e.what());
    out.status += " (not cached)";
  }
  return out;
}

}  // namespace lra::cache
