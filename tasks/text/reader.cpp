// Reading IMDB (aclImdb folder or aclImdb_v1.tar.gz) into byte ids as TFDS `imdb_reviews` and LRA's
// ByteTextEncoder see it: each review file's bytes, bytes.strip()ped, id = byte + 1; neg = 0,
// pos = 1; train/unsup and the other files of the release are ignored.
#include <algorithm>
#include <array>
#include <filesystem>
#include <tuple>

#include "core/check.h"
#include "core/files.h"
#include "tasks/common/archive.h"
#include "tasks/common/cache.h"
#include "tasks/text/text.h"

namespace lra::text {

namespace fs = std::filesystem;

namespace {

constexpr std::array<const char*, 2> kSplits = {"train", "test"};
constexpr std::array<const char*, 2> kLabels = {"neg", "pos"};  // label = index

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// A folder laid out like aclImdb: any of train/, test/ holding pos/ or neg/.
bool looks_like_aclimdb(const fs::path& dir) {
  for (const char* s : kSplits)
    for (const char* l : kLabels)
      if (is_dir(dir / s / l)) return true;
  return false;
}

// One labelled review before encoding: its path relative to aclImdb and its raw bytes.
struct RawReview {
  std::string rel;
  std::string bytes;
};

// Encodes the four groups (train/neg, train/pos, test/neg, test/pos), each sorted by file name.
// `where` names the folder or archive in messages.
ImdbReviews encode(std::array<std::vector<RawReview>, 4>& groups, const std::string& where) {
  ImdbReviews out;
  cache::Digest digest;
  std::vector<uint16_t> ids;
  for (size_t g = 0; g < 4; ++g) {
    auto& reviews = groups[g];
    std::sort(reviews.begin(), reviews.end(), [](const RawReview& a, const RawReview& b) { return a.rel < b.rel; });
    Split& split = g < 2 ? out.train : out.test;
    const int label = static_cast<int>(g % 2);
    for (const RawReview& r : reviews) {
      digest.add_field(r.rel);
      digest.add_field(r.bytes);
      const std::string_view text = strip_ascii_whitespace(r.bytes);
      LRA_CHECK(!text.empty(),
                "the IMDB review '{}' in '{}' is empty (or only whitespace); every review of the release has "
                "text, so the copy is damaged: extract or download aclImdb_v1.tar.gz again",
                r.rel, where);
      ids.clear();
      append_byte_ids(text, ids);
      split.add(ids, label);
      split.origins.add(where + ": " + r.rel, "", 0);
    }
  }
  out.digest = digest.hex();
  return out;
}

}  // namespace

std::string_view strip_ascii_whitespace(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

void append_byte_ids(std::string_view s, std::vector<uint16_t>& out) {
  const size_t at = out.size();
  out.resize(at + s.size());
  for (size_t i = 0; i < s.size(); ++i) out[at + i] = static_cast<uint16_t>(static_cast<unsigned char>(s[i]) + 1);
}

ImdbSource find_imdb(const std::string& data_dir) {
  ImdbSource src;
  if (data_dir.empty()) return src;
  const fs::path root(data_dir);
  auto found = [&](ImdbSource::Kind kind, const fs::path& p) {
    src.kind = kind;
    src.path = p.string();
    return src;
  };
  src.tried.push_back(root.string());
  if (is_file(root) && has_suffix(root.string(), ".tar.gz")) return found(ImdbSource::Archive, root);
  if (looks_like_aclimdb(root)) return found(ImdbSource::Folder, root);
  src.tried.push_back((root / "aclImdb").string());
  if (is_dir(root / "aclImdb")) return found(ImdbSource::Folder, root / "aclImdb");
  src.tried.push_back((root / "aclImdb_v1.tar.gz").string());
  if (is_file(root / "aclImdb_v1.tar.gz")) return found(ImdbSource::Archive, root / "aclImdb_v1.tar.gz");
  return src;
}

ImdbReviews read_imdb_folder(const std::string& dir) {
  std::array<std::vector<RawReview>, 4> groups;
  for (size_t s = 0; s < kSplits.size(); ++s)
    for (size_t l = 0; l < kLabels.size(); ++l) {
      const fs::path folder = fs::path(dir) / kSplits[s] / kLabels[l];
      LRA_CHECK(is_dir(folder),
                "the IMDB folder '{}' has no '{}/{}' folder ('{}' is missing); point --data-dir at a complete "
                "aclImdb folder (train/ and test/, each with pos/ and neg/) or at aclImdb_v1.tar.gz",
                dir, kSplits[s], kLabels[l], folder.string());
      auto& group = groups[s * 2 + l];
      std::error_code ec;
      for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!has_suffix(name, ".txt") || !it->is_regular_file()) continue;
        group.push_back({std::string(kSplits[s]) + "/" + kLabels[l] + "/" + name, read_file(it->path().string())});
      }
      LRA_CHECK(!ec, "cannot list the IMDB folder '{}': {}", folder.string(), ec.message());
      LRA_CHECK(!group.empty(), "the IMDB folder '{}' holds no review (*.txt); extract aclImdb_v1.tar.gz again",
                folder.string());
    }
  return encode(groups, dir);
}

ImdbReviews read_imdb_archive(const std::string& path) {
  std::array<std::vector<RawReview>, 4> groups;
  // Members .../<split>/<label>/<name>.txt; the group of one, or -1.
  auto group_of = [](const std::vector<std::string>& parts) -> int {
    if (parts.size() < 3 || !has_suffix(parts.back(), ".txt")) return -1;
    for (size_t s = 0; s < kSplits.size(); ++s)
      for (size_t l = 0; l < kLabels.size(); ++l)
        if (parts[parts.size() - 3] == kSplits[s] && parts[parts.size() - 2] == kLabels[l])
          return static_cast<int>(s * 2 + l);
    return -1;
  };
  for_each_archive_file(
      path, [&](const std::string& name) { return group_of(path_components(name)) >= 0; },
      [&](const std::string& name, std::string& contents) {
        const auto parts = path_components(name);
        const std::string rel = parts[parts.size() - 3] + "/" + parts[parts.size() - 2] + "/" + parts.back();
        groups[static_cast<size_t>(group_of(parts))].push_back({rel, std::move(contents)});
      });
  for (size_t s = 0; s < kSplits.size(); ++s)
    for (size_t l = 0; l < kLabels.size(); ++l)
      LRA_CHECK(!groups[s * 2 + l].empty(),
                "the archive '{}' holds no review under aclImdb/{}/{}/; it is not a complete "
                "aclImdb_v1.tar.gz: download it again",
                path, kSplits[s], kLabels[l]);
  return encode(groups, path);
}

// A key for an extracted folder without reading its 50,000 files: the name, size and modification
// time of every review file. Editing or replacing a review changes its size or time.
std::string folder_listing_digest(const std::string& dir) {
  cache::Digest d;
  for (const char* s : kSplits)
    for (const char* l : kLabels) {
      const fs::path folder = fs::path(dir) / s / l;
      std::vector<std::tuple<std::string, uintmax_t, int64_t>> files;
      std::error_code ec;
      for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!has_suffix(name, ".txt")) continue;
        std::error_code e2;
        const uintmax_t size = it->file_size(e2);
        const auto mtime = it->last_write_time(e2).time_since_epoch().count();
        files.emplace_back(name, size, static_cast<int64_t>(mtime));
      }
      std::sort(files.begin(), files.end());
      d.add_field(folder.string());
      for (const auto& [name, size, mtime] : files) {
        d.add_field(name);
        d.add(&size, sizeof size);
        d.add(&mtime, sizeof mtime);
      }
    }
  return d.hex();
}

}  // namespace lra::text
