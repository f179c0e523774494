// Reading AAN's new_aan_pairs.*.tsv as LRA's matching pipeline does: tab-separated, no header, no
// quoting; label (float -> int), id1, id2, text1, text2; each text cut to 10,000 bytes, byte-encoded
// (id = byte + 1) and cut to max_length.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "tasks/retrieval/retrieval.h"
#include "tasks/text/text.h"

namespace lra::retrieval {

namespace fs = std::filesystem;

namespace {

// `text` as byte ids: cut to kTextBytes, encoded, cut to max_length.
void encode(std::string_view text, int max_length, std::vector<uint16_t>& out) {
  out.clear();
  text = text.substr(0, std::min<size_t>(text.size(), std::min<size_t>(kTextBytes, static_cast<size_t>(max_length))));
  text::append_byte_ids(text, out);
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

}  // namespace

std::string parse_line(std::string_view line, int max_length, Split& out) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::string_view fields[5];
  size_t n = 0, start = 0;
  for (;;) {
    const size_t tab = line.find('\t', start);
    if (n == 5) return "more than 5 tab-separated fields (label, id1, id2, text1, text2)";
    fields[n++] = line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start);
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  if (n != 5) return fmt::format("{} tab-separated field(s); expected 5 (label, id1, id2, text1, text2)", n);
  // LRA parses the label as float32 and casts it to int32: "1", "1.0" and "0.0" all occur in copies.
  const std::string label_text(fields[0]);
  char* end = nullptr;
  const double label = std::strtod(label_text.c_str(), &end);
  if (label_text.empty() || end != label_text.c_str() + label_text.size() || !std::isfinite(label))
    return fmt::format("the label '{}' is not a number", label_text);
  // Casting truncates, so exactly the labels in (-1, 2) become 0 or 1; others are checked before the cast,
  // which is undefined for a value outside int's range.
  if (!(label > -1.0 && label < 2.0)) return fmt::format("the label '{}' is not 0 or 1", label_text);
  const int cls = static_cast<int>(label);
  std::vector<uint16_t> first, second;
  encode(fields[3], max_length, first);
  encode(fields[4], max_length, second);
  out.add_pair(first, second, cls);
  return "";
}

Split read_tsv(const std::string& path, int max_length, int64_t limit) {
  LRA_CHECK(max_length > 0, "max_length must be positive, got {}", max_length);
  std::ifstream in(path, std::ios::binary);
  LRA_CHECK(in.good(), "cannot open the AAN file '{}'; check the path or run `lra data status`", path);
  Split split;
  split.docs = 2;
  std::string line;
  int64_t line_no = 0;
  while ((limit <= 0 || static_cast<int64_t>(split.size()) < limit) && std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    const std::string err = parse_line(line, max_length, split);
    LRA_CHECK(err.empty(),
              "{}:{}: {}; an AAN line is label<TAB>id1<TAB>id2<TAB>text1<TAB>text2 (the release's "
              "tsv_data/new_aan_pairs.*.tsv): re-extract the file from lra_release.gz",
              path, line_no, err);
    split.origins.add(path, "line", line_no);
  }
  LRA_CHECK(!in.bad(), "reading the AAN file '{}' failed after line {}", path, line_no);
  LRA_CHECK(split.size() > 0, "the AAN file '{}' holds no pairs; re-extract it from lra_release.gz", path);
  LRA_CHECK(limit <= 0 || static_cast<int64_t>(split.size()) == limit,
            "the AAN file '{}' holds {} pairs but {} were asked for (n_train/n_val/n_test)", path, split.size(),
            limit);
  return split;
}

std::string find_aan(const std::string& data_dir, std::vector<std::string>& tried) {
  tried.clear();
  if (data_dir.empty()) return "";
  const fs::path root(data_dir);
  for (const fs::path& dir : {root, root / "tsv_data", root / "lra_release" / "tsv_data",
                             root / "lra_release" / "lra_release" / "tsv_data"}) {
    tried.push_back(dir.string());
    if (!is_file(dir / kFiles[0])) continue;
    for (const char* name : kFiles)
      LRA_CHECK(is_file(dir / name), "'{}' holds {} but not {}; the release has all three AAN files", dir.string(),
                kFiles[0], name);
    return dir.string();
  }
  return "";
}

}  // namespace lra::retrieval
