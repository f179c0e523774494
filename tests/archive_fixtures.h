// Writers of the compressed formats the datasets ship as, for fixtures in the released layouts: a gzip
// file holding `bytes` (zlib), and a gzip-compressed tar (POSIX pax, libarchive) of regular files, each
// (name, contents). Both write a temporary file and rename it into place.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace lra::test {

inline void write_gzip(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(getpid()));
  gzFile f = gzopen(tmp.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("write_gzip: cannot open " + tmp);
  bool ok = true;
  for (size_t at = 0; ok && at < bytes.size();) {
    const auto n = static_cast<unsigned>(std::min<size_t>(bytes.size() - at, size_t{1} << 30));
    ok = gzwrite(f, bytes.data() + at, n) == static_cast<int>(n);
    at += n;
  }
  ok = gzclose_w(f) == Z_OK && ok;
  if (!ok) {
    std::filesystem::remove(tmp);
    throw std::runtime_error("write_gzip: could not write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

inline void write_tar_gz(const std::string& path, const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(getpid()));
  struct archive* a = archive_write_new();
  if (a == nullptr) throw std::runtime_error("write_tar_gz: libarchive could not allocate a writer");
  auto fail = [&](const std::string& what) {
    const char* msg = archive_error_string(a);
    const std::string text = "write_tar_gz: " + path + ": " + what + ": " + (msg != nullptr ? msg : "?");
    archive_write_free(a);
    std::filesystem::remove(tmp);
    throw std::runtime_error(text);
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
  std::filesystem::rename(tmp, path);
}

}  // namespace lra::test
