// gzip files through zlib and tar archives through libarchive (see archive.h for the format facts).
#include "tasks/common/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/check.h"

namespace lra {

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose_r(f); }
};

struct ArchiveCloser {
  void operator()(struct archive* a) const { archive_read_free(a); }
};

constexpr int64_t kMaxReserve = int64_t{64} << 20;

std::string archive_message(struct archive* a) {
  const char* s = archive_error_string(a);
  return s != nullptr ? s : "unknown libarchive error";
}

using ArchivePtr = std::unique_ptr<struct archive, ArchiveCloser>;

ArchivePtr open_archive(const std::string& path) {
  std::error_code ec;
  LRA_CHECK(std::filesystem::is_regular_file(path, ec), "the archive '{}' does not exist or is not a file",
            path);
  ArchivePtr a(archive_read_new());
  LRA_CHECK(a != nullptr, "libarchive could not allocate a reader for '{}'", path);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), size_t{1} << 20) != ARCHIVE_OK)
    LRA_FAIL("cannot open the archive '{}': {}", path, archive_message(a.get()));
  return a;
}

// Walks the entries; visit(entry) is called for each regular file and must consume or skip it.
template <class Visit>
void walk(const std::string& path, Visit visit) {
  ArchivePtr a = open_archive(path);
  struct archive_entry* entry = nullptr;
  int r = ARCHIVE_OK;
  int64_t entries = 0;
  while ((r = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
    ++entries;
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    visit(a.get(), entry);
  }
  if (r != ARCHIVE_EOF)
    LRA_FAIL("cannot read the archive '{}' after {} entries: {}; the file is not a tar archive or is "
             "truncated or corrupt: download it again",
             path, entries, archive_message(a.get()));
}

}  // namespace

std::string read_gzip(const std::string& path) {
  errno = 0;
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  LRA_CHECK(f != nullptr, "cannot open '{}': {}", path, errno != 0 ? std::strerror(errno) : "out of memory");
  gzbuffer(f.get(), 1u << 20);
  std::string out;
  constexpr size_t kChunk = size_t{1} << 22;
  for (;;) {
    const size_t at = out.size();
    out.resize(at + kChunk);
    const int got = gzread(f.get(), out.data() + at, static_cast<unsigned>(kChunk));
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f.get(), &err);
      LRA_FAIL("cannot decompress '{}': {}; the file is truncated or corrupt: download it again", path,
               msg != nullptr ? msg : "unknown zlib error");
    }
    out.resize(at + static_cast<size_t>(got));
    if (got == 0) break;
  }
  // gzclose_r reports a stream that ended early even when the last read returned its data.
  const int rc = gzclose_r(f.release());
  LRA_CHECK(rc == Z_OK, "cannot decompress '{}': {}; the file is truncated or corrupt: download it again", path,
            rc == Z_BUF_ERROR ? "it ends in the middle of a compressed stream" : "zlib error " + std::to_string(rc));
  return out;
}

void for_each_archive_file(const std::string& path, const std::function<bool(const std::string&)>& want,
                           const std::function<void(const std::string&, std::string&)>& read) {
  std::string contents;
  walk(path, [&](struct archive* a, struct archive_entry* entry) {
    const std::string name = archive_entry_pathname(entry);
    if (!want(name)) return;
    const int64_t size = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : -1;
    contents.clear();
    // The header's size is a claim of the file, not a fact: reserve no more than a released member needs
    // (a CIFAR-10 batch is 30 MB) and let a larger one grow as its data arrives.
    if (size > 0) contents.reserve(static_cast<size_t>(std::min<int64_t>(size, kMaxReserve)));
    char buf[1 << 16];
    for (;;) {
      const la_ssize_t got = archive_read_data(a, buf, sizeof buf);
      if (got < 0)
        LRA_FAIL("cannot read '{}' from the archive '{}': {}; the archive is truncated or corrupt: download "
                 "it again",
                 name, path, archive_message(a));
      if (got == 0) break;
      contents.append(buf, static_cast<size_t>(got));
    }
    LRA_CHECK(size < 0 || static_cast<int64_t>(contents.size()) == size,
              "the member '{}' of the archive '{}' holds {} bytes but its header says {}; the archive is "
              "truncated or corrupt: download it again",
              name, path, contents.size(), size);
    read(name, contents);
  });
}

std::vector<std::string> path_components(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string part = name.substr(start, end - start);
    if (!part.empty() && part != ".") parts.push_back(std::move(part));
    start = end + 1;
  }
  return parts;
}

}  // namespace lra
