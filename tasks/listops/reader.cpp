// ListOps TSV files (`Source<TAB>Target`, as LRA's generator writes them) and the release layout.

#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "core/files.h"
#include "tasks/listops/listops.h"

namespace lra::listops {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kHeader = "Source\tTarget";
constexpr std::string_view kBom = "\xEF\xBB\xBF";
constexpr size_t kFlushBytes = size_t{1} << 22;

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// A long line shown in an error message is cut to its start.
std::string excerpt(std::string_view s) {
  constexpr size_t kMax = 60;
  return s.size() <= kMax ? std::string(s) : fmt::format("{}...", s.substr(0, kMax));
}

}  // namespace

void write_tsv(const std::string& path, const Split& split) {
  // The whole training file is several hundred MB, so it is streamed in pieces through a temporary
  // file that is renamed at the end (AtomicFile) rather than built in memory.
  AtomicFile f(path);
  std::string buf;
  buf.reserve(kFlushBytes + (size_t{1} << 16));
  buf.append(kHeader);
  buf += "\r\n";
  for (size_t i = 0; i < split.size(); ++i) {
    append_source(split.tokens.data() + split.offsets[i], static_cast<size_t>(split.length(i)),
                  buf);
    buf += fmt::format("\t{}\r\n", split.labels[i]);
    if (buf.size() >= kFlushBytes) {
      f.write(buf.data(), buf.size());
      buf.clear();
    }
  }
  f.write(buf.data(), buf.size());
  f.commit();
}

Split read_tsv(const std::string& path, int64_t limit, int max_length) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot open the ListOps file '{}': {}; check --data-dir", path,
            std::strerror(errno));
  size_t line_no = 0;
  auto fail = [&](const std::string& what) {
    LRA_FAIL("malformed ListOps file '{}', line {}: {}", path, line_no, what);
  };
  std::string line;
  ++line_no;
  if (!std::getline(f, line))
    fail(fmt::format("the file is empty; expected the header '{}'", "Source<TAB>Target"));
  std::string_view header(line);
  if (header.substr(0, kBom.size()) == kBom) header.remove_prefix(kBom.size());
  if (!header.empty() && header.back() == '\r') header.remove_suffix(1);
  if (header != kHeader)
    fail(fmt::format("expected the header 'Source<TAB>Target', found '{}'", excerpt(header)));

  Split split;
  if (limit <= 0) {
    // LRA's serialisation takes about 6.4 bytes per token; reserving spares copying a split of
    // hundreds of MB as it grows.
    std::error_code ec;
    const auto bytes = fs::file_size(path, ec);
    if (!ec) split.tokens.reserve(static_cast<size_t>(bytes / 6));
  }
  std::vector<uint16_t> ids;
  size_t blank_line = 0;  // a blank line is fine only when nothing but blank lines follows it
  while ((limit <= 0 || static_cast<int64_t>(split.size()) < limit) && std::getline(f, line)) {
    ++line_no;
    std::string_view l(line);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.empty()) {
      if (blank_line == 0) blank_line = line_no;
      continue;
    }
    if (blank_line != 0) {
      line_no = blank_line;
      fail("blank line before the end of the file");
    }
    const size_t tab = l.find('\t');
    const size_t fields = 1 + static_cast<size_t>(std::count(l.begin(), l.end(), '\t'));
    if (fields != 2)
      fail(fmt::format("expected 2 tab-separated fields (Source, Target), found {}", fields));
    const std::string_view target = trim_spaces(l.substr(tab + 1));
    int label = 0;
    const auto [end, ec] = std::from_chars(target.data(), target.data() + target.size(), label);
    if (target.empty() || ec == std::errc::invalid_argument || end != target.data() + target.size())
      fail(fmt::format("Target '{}' is not an integer", excerpt(target)));
    if (ec == std::errc::result_out_of_range || label < 0 || label >= kNumClasses)
      fail(fmt::format("Target {} is outside 0..{}", excerpt(target), kNumClasses - 1));
    ids.clear();
    const std::string problem = tokenize_into(l.substr(0, tab), ids);
    if (!problem.empty()) fail(problem);
    if (max_length > 0 && ids.size() > static_cast<size_t>(max_length))
      ids.resize(static_cast<size_t>(max_length));
    split.add(ids, label);
    split.origins.add(path, "line", static_cast<int64_t>(line_no));
  }
  LRA_CHECK(f.good() || f.eof(), "error while reading the ListOps file '{}' after line {}", path,
            line_no);
  LRA_CHECK(split.size() > 0, "the ListOps file '{}' has a header but no examples", path);
  LRA_CHECK(limit <= 0 || static_cast<int64_t>(split.size()) == limit,
            "the ListOps file '{}' has only {} examples but the first {} were asked for; lower "
            "n_train/n_val/n_test or leave them at 0 for all",
            path, split.size(), limit);
  return split;
}

int64_t count_tsv_examples(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot open the ListOps file '{}': {}; check --data-dir", path, std::strerror(errno));
  std::string line;
  std::getline(f, line);
  std::string_view header(line);
  if (header.substr(0, kBom.size()) == kBom) header.remove_prefix(kBom.size());
  if (!header.empty() && header.back() == '\r') header.remove_suffix(1);
  LRA_CHECK(header == kHeader,
            "malformed ListOps file '{}', line 1: expected the header 'Source<TAB>Target', found '{}'", path,
            excerpt(header));
  // Counted in large blocks: the released training file is about 600 MB.
  std::vector<char> buf(kFlushBytes);
  int64_t lines = 0;
  bool blank = true;  // the current line has nothing but a CR so far
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<size_t>(f.gcount());
    for (size_t i = 0; i < got; ++i) {
      const char c = buf[i];
      if (c == '\n') {
        lines += blank ? 0 : 1;
        blank = true;
      } else if (c != '\r') {
        blank = false;
      }
    }
  }
  LRA_CHECK(!f.bad(), "error while reading the ListOps file '{}'", path);
  return lines + (blank ? 0 : 1);
}

std::string locate_data_dir(const std::string& data_dir, std::vector<std::string>& tried) {
  const fs::path root(data_dir);
  const fs::path candidates[] = {root, root / "listops-1000", root / "lra_release" / "listops-1000",
                                 root / "lra_release" / "lra_release" / "listops-1000"};
  for (const fs::path& c : candidates) {
    tried.push_back(c.string());
    std::error_code ec;
    if (!fs::is_regular_file(c / "basic_train.tsv", ec)) continue;
    for (const char* name : {"basic_val.tsv", "basic_test.tsv"})
      LRA_CHECK(fs::is_regular_file(c / name, ec),
                "'{}' has basic_train.tsv but no {}; the ListOps release keeps basic_train.tsv, "
                "basic_val.tsv and basic_test.tsv side by side",
                c.string(), name);
    return c.string();
  }
  return "";
}

}  // namespace lra::listops
