// Downloads (libcurl), their MD5 (core/files.h) and release extraction (libarchive); see download.h.
#include "tasks/common/download.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>

#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/common/archive.h"

namespace lra {

namespace fs = std::filesystem;

namespace {

constexpr const char* kReleaseUrl = "https://storage.googleapis.com/long-range-arena/lra_release.gz";
constexpr const char* kImdbUrl = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz";
constexpr const char* kCifarUrl = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

std::string human_bytes(double b) {
  static const char* const units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) {
    b /= 1000.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

std::string human_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60)
                   : fmt::format("{}:{:02d}", s / 60, s % 60);
}

// Progress of one transfer on stderr: a bar redrawn in place on a terminal; on anything else (a log
// file, a CI job) a plain line every kLineSeconds and one at the end, so logs stay readable.
class Progress {
 public:
  // `start`: bytes that were there before this transfer (a resumed .part); the rate leaves them out.
  Progress(std::string label, bool enabled, int64_t start)
      : label_(std::move(label)), enabled_(enabled), tty_(stderr_is_terminal()), start_(start) {}

  // done of total bytes (total <= 0: unknown).
  void update(int64_t done, int64_t total) {
    if (!enabled_) return;
    const double now = timer_.seconds();
    if (now - last_ < (tty_ ? kBarSeconds : kLineSeconds)) return;
    last_ = now;
    print(done, total, false);
  }

  void finish(int64_t done, int64_t total) {
    if (enabled_) print(done, total, true);
  }

 private:
  static constexpr double kBarSeconds = 0.1, kLineSeconds = 5.0;

  void print(int64_t done, int64_t total, bool last) {
    const double elapsed = timer_.seconds();
    const double rate = elapsed > 0.0 ? static_cast<double>(done - start_) / elapsed : 0.0;
    std::string line = label_;
    if (total > 0) {
      const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
      if (tty_) {
        constexpr int kWidth = 30;
        const int full = static_cast<int>(frac * kWidth);
        line += fmt::format("  [{}{}{}]", std::string(static_cast<size_t>(full), '='), full < kWidth ? ">" : "",
                            std::string(static_cast<size_t>(std::max(0, kWidth - full - 1)), ' '));
      }
      line += fmt::format("  {:5.1f}%  {} / {}", 100.0 * frac, human_bytes(static_cast<double>(done)),
                          human_bytes(static_cast<double>(total)));
    } else {
      line += fmt::format("  {}", human_bytes(static_cast<double>(done)));
    }
    line += fmt::format("  {}/s", human_bytes(rate));
    if (last)
      line += fmt::format("  done in {}", human_duration(elapsed));
    else if (total > 0 && rate > 0.0)
      line += fmt::format("  ETA {}", human_duration(static_cast<double>(total - done) / rate));
    if (tty_)
      fmt::print(stderr, "\r{}\x1b[K{}", line, last ? "\n" : "");
    else
      fmt::print(stderr, "{}\n", line);
    std::fflush(stderr);
  }

  std::string label_;
  bool enabled_, tty_;
  int64_t start_;
  Timer timer_;
  double last_ = 0.0;
};

int64_t size_of(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

bool exists_with_files(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec));
}

// ---- libcurl ----

void init_curl() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  LRA_CHECK(rc == CURLE_OK, "libcurl could not be initialised: {}", curl_easy_strerror(rc));
}

struct CurlCleanup {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

// One transfer's state, shared with libcurl's callbacks.
struct Transfer {
  FILE* out = nullptr;
  int64_t offset = 0;        // bytes in the .part before this transfer
  int write_errno = 0;       // set when writing to the .part failed
  int64_t range_total = -1;  // the file's size from a Content-Range header, when one came
  Progress* progress = nullptr;
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (std::fwrite(data, 1, bytes, t->out) != bytes) {
    t->write_errno = errno;
    return 0;  // libcurl stops with CURLE_WRITE_ERROR
  }
  return bytes;
}

// Keeps the total of `Content-Range: bytes a-b/TOTAL` (206) or `bytes */TOTAL` (416). A redirect
// starts a new response, whose headers replace the last one's.
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) t->range_total = -1;
  constexpr std::string_view kName = "content-range:";
  if (line.size() > kName.size()) {
    std::string head = line.substr(0, kName.size());
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
    const size_t slash = line.find('/');
    if (head == kName && slash != std::string::npos) {
      char* end = nullptr;
      const long long total = std::strtoll(line.c_str() + slash + 1, &end, 10);
      if (end != line.c_str() + slash + 1 && total >= 0) t->range_total = total;
    }
  }
  return size * n;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  t->progress->update(t->offset + dlnow, dltotal > 0 ? t->offset + dltotal : -1);
  return 0;
}

struct Outcome {
  CURLcode code = CURLE_OK;
  long http = 0;  // the last HTTP status (0 for file://)
  std::string error;
  int write_errno = 0;
  int64_t range_total = -1;
  int64_t total = -1;  // the file's full size when the server said it
};

// One request for `url` from byte `offset` on, appended to `part` (truncated first when offset is 0).
Outcome transfer(const std::string& url, const std::string& part, int64_t offset, Progress& progress) {
  Transfer t;
  t.offset = offset;
  t.progress = &progress;
  t.out = std::fopen(part.c_str(), offset > 0 ? "ab" : "wb");
  LRA_CHECK(t.out != nullptr, "cannot open '{}' for writing: {}; check that the data folder is writable", part,
            std::strerror(errno));
  std::unique_ptr<CURL, CurlCleanup> c(curl_easy_init());
  LRA_CHECK(c != nullptr, "libcurl could not create a transfer for {}", url);
  char errbuf[CURL_ERROR_SIZE] = {};
  const std::string agent = fmt::format("lra/{} ({})", LRA_VERSION, curl_version());
  CURL* h = c.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  // HTTP errors (403, 404, ...) fail the transfer instead of landing in the .part as an error page.
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  // A stalled connection (under 1 kB/s for two minutes) fails rather than hangs; the .part resumes.
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1000L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 120L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, agent.c_str());
  curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(offset));
  Outcome o;
  o.code = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &o.http);
  curl_off_t length = -1;
  curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
  o.error = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(o.code);
  o.write_errno = t.write_errno;
  o.range_total = t.range_total;
  o.total = t.range_total >= 0 ? t.range_total : length >= 0 ? offset + length : -1;
  const bool flushed = std::fflush(t.out) == 0;
  const int flush_errno = errno;
  const bool closed = std::fclose(t.out) == 0;
  LRA_CHECK(flushed && closed, "could not write '{}': {}; free some space or choose another --data-dir", part,
            std::strerror(flushed ? errno : flush_errno));
  return o;
}

std::string http_reason(long status) {
  switch (status) {
    case 400: return " (Bad Request)";
    case 401: return " (Unauthorized)";
    case 403: return " (Forbidden)";
    case 404: return " (Not Found)";
    case 410: return " (Gone)";
    case 429: return " (Too Many Requests)";
    case 500: return " (Internal Server Error)";
    case 502: return " (Bad Gateway)";
    case 503: return " (Service Unavailable)";
    default: return "";
  }
}

std::string describe(const Outcome& o) {
  if (o.code == CURLE_HTTP_RETURNED_ERROR) return fmt::format("HTTP status {}{}", o.http, http_reason(o.http));
  if (o.code == CURLE_WRITE_ERROR && o.write_errno != 0)
    return fmt::format("writing the download failed: {}", std::strerror(o.write_errno));
  return fmt::format("{} (curl error {}: {})", o.error, static_cast<int>(o.code), curl_easy_strerror(o.code));
}

// ---- libarchive ----

struct ArchiveReadCloser {
  void operator()(struct archive* a) const { archive_read_free(a); }
};

std::string archive_message(struct archive* a) {
  const char* s = archive_error_string(a);
  return s != nullptr ? s : "unknown libarchive error";
}

// A member's path relative to the release root: its name without leading "lra_release" components.
std::vector<std::string> release_relative(const std::string& name) {
  std::vector<std::string> parts = path_components(name);
  size_t skip = 0;
  while (skip < parts.size() && parts[skip] == "lra_release") ++skip;
  parts.erase(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(skip));
  return parts;
}

// Copies the current member's data to `path`.
void write_member(struct archive* a, const std::string& archive_path, const std::string& name, const fs::path& path) {
  FILE* f = std::fopen(path.c_str(), "wb");
  LRA_CHECK(f != nullptr, "cannot create '{}': {}; check that --data-dir is writable", path.string(),
            std::strerror(errno));
  char buf[1 << 16];
  for (;;) {
    const la_ssize_t got = archive_read_data(a, buf, sizeof buf);
    if (got < 0) {
      std::fclose(f);
      LRA_FAIL("cannot read '{}' from the archive '{}': {}; the archive is truncated or corrupt: remove it and "
               "download it again",
               name, archive_path, archive_message(a));
    }
    if (got == 0) break;
    if (std::fwrite(buf, 1, static_cast<size_t>(got), f) != static_cast<size_t>(got)) {
      const int err = errno;
      std::fclose(f);
      LRA_FAIL("could not write '{}': {}; free some space or choose another --data-dir", path.string(),
               std::strerror(err));
    }
  }
  LRA_CHECK(std::fclose(f) == 0, "could not write '{}': {}; free some space or choose another --data-dir",
            path.string(), std::strerror(errno));
}

std::string join_url(const std::string& prefix, const std::string& file) {
  return !prefix.empty() && prefix.back() == '/' ? prefix + file : prefix + "/" + file;
}

}  // namespace

OfficialArchive official_archive(const std::string& task) {
  if (task == "text") return {"aclImdb_v1.tar.gz", kImdbUrl, "7c2ac02c03563afcf9b574c7e56c153a", {}};
  if (task == "image") return {"cifar-10-binary.tar.gz", kCifarUrl, "c32a1d4ab5d03f1284b67883e8d87530", {}};
  if (task == "listops") return {"lra_release.gz", kReleaseUrl, "", {"listops-1000"}};
  if (task == "retrieval") return {"lra_release.gz", kReleaseUrl, "", {"tsv_data"}};
  if (task == "pathfinder") return {"lra_release.gz", kReleaseUrl, "", {"pathfinder32"}};
  if (task == "pathx") return {"lra_release.gz", kReleaseUrl, "", {"pathfinder128"}};
  LRA_FAIL("no official files are known for task '{}'; `lra data fetch` knows {} (or all)", task,
           fmt::join(fetchable_tasks(), ", "));
}

std::vector<std::string> fetchable_tasks() { return {"listops", "text", "image", "pathfinder", "pathx", "retrieval"}; }

std::string md5_file(const std::string& path) { return file_digest(path, "md5"); }

void download(const std::string& url, const std::string& dest, const std::string& md5, bool progress,
              const std::string& manual) {
  init_curl();
  const fs::path target(dest);
  if (target.has_parent_path()) make_dirs(target.parent_path().string());
  const std::string part = dest + ".part";
  const std::string label = target.filename().string();
  int64_t offset = size_of(part);
  if (offset > 0 && progress)
    fmt::print(stderr, "{}: resuming the partial download '{}' at byte {} ({})\n", label, part, offset,
               human_bytes(static_cast<double>(offset)));
  else if (progress)
    fmt::print(stderr, "{}: downloading {}\n", label, url);
  auto bar = std::make_unique<Progress>(label, progress, offset);
  Outcome o = transfer(url, part, offset, *bar);
  // A server that cannot continue at `offset`: one that ignores the range (libcurl refuses to append
  // its whole file), a .part longer than the file, or a 416 whose Content-Range does not say the
  // .part is already complete. Starting over from byte 0 is the clean way out.
  const bool range_refused = o.code == CURLE_RANGE_ERROR || o.code == CURLE_BAD_DOWNLOAD_RESUME ||
                             (o.code == CURLE_OK && o.http == 416 && o.range_total != offset);
  if (offset > 0 && range_refused) {
    fmt::print(stderr, "{}: the server did not continue at byte {} ({}); downloading from the start\n", label, offset,
               o.code == CURLE_OK ? fmt::format("HTTP status {}", o.http) : o.error);
    offset = 0;
    bar = std::make_unique<Progress>(label, progress, 0);
    o = transfer(url, part, 0, *bar);
  }
  const int64_t have = size_of(part);
  if (o.code != CURLE_OK) {
    const std::string kept =
        have > 0 ? fmt::format("The partial download '{}' ({} bytes) is kept: running the command again continues it.",
                               part, have)
                 : "";
    if (have == 0) std::remove(part.c_str());
    LRA_FAIL("could not download {}: {}. {}{}To do it by hand: {}", url, describe(o), kept, kept.empty() ? "" : " ",
             manual);
  }
  bar->finish(have, o.total > 0 ? o.total : have);
  if (!md5.empty()) {
    const std::string got = md5_file(part);
    if (got != md5) {
      std::remove(part.c_str());
      LRA_FAIL("MD5 mismatch for {} (from {}): expected {}, got {}; the download is damaged or is not the released "
               "file, so it was removed ('{}'). Run the command again, or do it by hand: {}",
               label, url, md5, got, part, manual);
    }
  }
  if (std::rename(part.c_str(), dest.c_str()) != 0)
    LRA_FAIL("could not rename '{}' to '{}': {}", part, dest, std::strerror(errno));
}

std::string release_folder_path(const std::string& dest_root, const std::string& folder) {
  return (fs::path(dest_root) / "lra_release" / "lra_release" / folder).string();
}

void extract_release_folders(const std::string& archive, const std::string& dest_root,
                             const std::vector<std::string>& folders, bool progress) {
  LRA_CHECK(!folders.empty(), "extract_release_folders: no folders to extract from '{}'", archive);
  for (const std::string& f : folders)
    LRA_CHECK(!exists_with_files(release_folder_path(dest_root, f)),
              "'{}' already exists and holds files; remove it to extract it again from '{}'",
              release_folder_path(dest_root, f), archive);
  const std::set<std::string> wanted(folders.begin(), folders.end());
  const fs::path tmp = fs::path(dest_root) / fmt::format(".lra_release.extract.tmp.{}", static_cast<long>(getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  make_dirs(tmp.string());
  try {
    std::unique_ptr<struct archive, ArchiveReadCloser> a(archive_read_new());
    LRA_CHECK(a != nullptr, "libarchive could not allocate a reader for '{}'", archive);
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    if (archive_read_open_filename(a.get(), archive.c_str(), size_t{1} << 20) != ARCHIVE_OK)
      LRA_FAIL("cannot open the archive '{}': {}; remove it and run `lra data fetch` again", archive,
               archive_message(a.get()));
    const int64_t total = size_of(archive);
    if (progress)
      fmt::print(stderr, "extracting {} from {}\n", fmt::join(folders, ", "), fs::path(archive).filename().string());
    Progress bar("extracting " + fs::path(archive).filename().string(), progress, 0);
    std::set<std::string> seen;
    std::string made;  // the last folder created, to spare a syscall per member
    struct archive_entry* entry = nullptr;
    int r = ARCHIVE_OK;
    int64_t entries = 0;
    while ((r = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
      ++entries;
      const std::string name = archive_entry_pathname(entry);
      const std::vector<std::string> parts = release_relative(name);
      if (parts.empty() || wanted.count(parts[0]) == 0) continue;
      LRA_CHECK(std::find(parts.begin(), parts.end(), "..") == parts.end(),
                "the archive '{}' has a member '{}' that points outside its folder; it is not LRA's release",
                archive, name);
      fs::path out = tmp;
      for (const std::string& p : parts) out /= p;
      const auto type = archive_entry_filetype(entry);
      if (type == AE_IFDIR) {
        make_dirs(out.string());
      } else if (type == AE_IFREG) {
        if (out.parent_path().string() != made) {
          make_dirs(out.parent_path().string());
          made = out.parent_path().string();
        }
        write_member(a.get(), archive, name, out);
        seen.insert(parts[0]);
      }
      bar.update(archive_filter_bytes(a.get(), -1), total);
    }
    if (r != ARCHIVE_EOF)
      LRA_FAIL("cannot read the archive '{}' after {} entries: {}; it is truncated or corrupt: remove it and run "
               "`lra data fetch` again",
               archive, entries, archive_message(a.get()));
    for (const std::string& f : folders)
      LRA_CHECK(seen.count(f) > 0,
                "the archive '{}' holds no file under lra_release/{}/; it is not LRA's release (lra_release.gz from "
                "{}), or an incomplete copy of it",
                archive, f, kReleaseUrl);
    bar.finish(total, total);
    for (const std::string& f : folders) {
      const fs::path final_dir = release_folder_path(dest_root, f);
      make_dirs(final_dir.parent_path().string());
      fs::remove(final_dir, ec);  // an empty folder in the way (checked above)
      fs::rename(tmp / f, final_dir, ec);
      LRA_CHECK(!ec, "could not move the extracted '{}' to '{}': {}", (tmp / f).string(), final_dir.string(),
                ec.message());
    }
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  fs::remove_all(tmp, ec);
}

std::vector<FetchResult> fetch_official(const std::vector<std::string>& tasks, const std::string& data_dir,
                                        const std::string& mirror, bool progress) {
  LRA_CHECK(!data_dir.empty(), "no data folder: give --data-dir (or set LRA_DATA_DIR)");
  make_dirs(data_dir);
  // Tasks grouped by archive, in the order given: one download and one extraction pass per archive.
  std::vector<std::pair<OfficialArchive, std::vector<std::string>>> groups;
  for (const std::string& t : tasks) {
    const OfficialArchive a = official_archive(t);
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& x) { return x.first.file == a.file; });
    if (g == groups.end()) {
      groups.push_back({a, {t}});
    } else if (std::find(g->second.begin(), g->second.end(), t) == g->second.end()) {
      g->second.push_back(t);
    }
  }
  std::vector<FetchResult> results;
  for (const auto& [archive, group] : groups) {
    const std::string dest = (fs::path(data_dir) / archive.file).string();
    const std::string url = mirror.empty() ? archive.url : join_url(mirror, archive.file);
    std::vector<std::string> missing;
    for (const std::string& t : group)
      for (const std::string& f : official_archive(t).folders)
        if (!exists_with_files(release_folder_path(data_dir, f)) &&
            std::find(missing.begin(), missing.end(), f) == missing.end())
          missing.push_back(f);
    const bool extract = !archive.folders.empty();
    std::string action;
    if (extract && missing.empty()) {
      action = "not needed: its folders are already extracted";
    } else if (fs::exists(dest)) {
      if (!archive.md5.empty()) {
        const std::string got = md5_file(dest);
        LRA_CHECK(got == archive.md5,
                  "'{}' is already there but its MD5 is {}, not the published {}: it is damaged or another file. "
                  "Remove it and run `lra data fetch` again",
                  dest, got, archive.md5);
        action = "already present, MD5 verified";
      } else {
        action = "already present (no checksum is published to verify it)";
      }
    } else {
      const std::string manual =
          extract ? fmt::format("download {} by other means and put it at '{}', then run `lra data fetch {} --data-dir "
                                "{}` again to extract it (or extract it yourself with `tar xzf {} -C {}`); `lra data "
                                "status --data-dir {}` will then find it",
                                archive.url, dest, fmt::join(group, " "), data_dir, dest, data_dir, data_dir)
                  : fmt::format("download {} by other means and put it at '{}' (MD5 {}); `lra data status --data-dir "
                                "{}` will then find it",
                                archive.url, dest, archive.md5, data_dir);
      download(url, dest, archive.md5, progress, manual);
      action = fmt::format("downloaded from {}{}", url, archive.md5.empty() ? "" : ", MD5 verified");
    }
    if (!missing.empty()) extract_release_folders(dest, data_dir, missing, progress);
    for (const std::string& t : group) {
      FetchResult r;
      r.task = t;
      r.archive = dest;
      r.action = action;
      for (const std::string& f : official_archive(t).folders)
        (std::find(missing.begin(), missing.end(), f) != missing.end() ? r.extracted : r.present)
            .push_back(release_folder_path(data_dir, f));
      results.push_back(std::move(r));
    }
  }
  return results;
}

}  // namespace lra
