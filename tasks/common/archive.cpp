// gzip files through zlib and tar archives through libarchive (see archive.h for the format facts).
#include "tasks/common/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <unistd.h>

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

std::string archive_message(struct archive* a) {
  const char* s = archive_error_string(a);
  return s != nullptr ? s : "unknown libarchive error";
}

std::string temp_name(const std::string& path) {
  return path + ".tmp." + std::to_string(static_cast<long>(getpid()));
}

void rename_into_place(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    LRA_FAIL("could not rename '{}' to '{}': {}", tmp, path, std::strerror(err));
  }
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
    if (size > 0) contents.reserve(static_cast<size_t>(size));
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

std::vector<ArchiveMember> list_archive(const std::string& path) {
  std::vector<ArchiveMember> members;
  walk(path, [&](struct archive*, struct archive_entry* entry) {
    members.push_back({archive_entry_pathname(entry), archive_entry_size(entry)});
  });
  return members;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  const std::string tmp = temp_name(path);
  gzFile f = gzopen(tmp.c_str(), "wb");
  LRA_CHECK(f != nullptr, "cannot open '{}' for writing: {}", tmp, std::strerror(errno));
  size_t at = 0;
  while (at < bytes.size()) {
    const auto n = static_cast<unsigned>(std::min<size_t>(bytes.size() - at, size_t{1} << 30));
    if (gzwrite(f, bytes.data() + at, n) != static_cast<int>(n)) {
      gzclose_w(f);
      std::remove(tmp.c_str());
      LRA_FAIL("could not write '{}'", tmp);
    }
    at += n;
  }
  if (gzclose_w(f) != Z_OK) {
    std::remove(tmp.c_str());
    LRA_FAIL("could not finish writing '{}'", tmp);
  }
  rename_into_place(tmp, path);
}

void write_tar_gz(const std::string& path, const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string tmp = temp_name(path);
  struct archive* a = archive_write_new();
  LRA_CHECK(a != nullptr, "libarchive could not allocate a writer for '{}'", path);
  auto fail = [&](const std::string& what) {
    const std::string msg = archive_message(a);
    archive_write_free(a);
    std::remove(tmp.c_str());
    LRA_FAIL("cannot write the archive '{}': {}: {}", path, what, msg);
  };
  if (archive_write_add_filter_gzip(a) != ARCHIVE_OK || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
      archive_write_open_filename(a, tmp.c_str()) != ARCHIVE_OK)
    fail("cannot open it");
  for (const auto& [name, contents] : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(contents.size()));
    const bool ok = archive_write_header(a, e) == ARCHIVE_OK &&
                    archive_write_data(a, contents.data(), contents.size()) == static_cast<la_ssize_t>(contents.size());
    archive_entry_free(e);
    if (!ok) fail(name);
  }
  if (archive_write_close(a) != ARCHIVE_OK) fail("cannot finish it");
  archive_write_free(a);
  rename_into_place(tmp, path);
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
