// The released Pathfinder layout (docs/data-formats.md 7.1/7.2): finding a difficulty folder under
// --data-dir, reading its metadata text files and grayscale PNGs (libpng), and writing generated
// images in the same layout.
//
// Facts relied on: metadata/<k>.npy are text, one image per line, fields separated by single
// spaces, field 0 the subfolder (imgs/<k>), field 1 the file name, field 3 the label (0/1), field 9
// the paddle margin; the last line ends with '\n' (a CR before it is tolerated here). Images are
// 8-bit grayscale R x R PNGs; one released file is empty (0 bytes) and, as in LRA, empty files are
// skipped. The split is LRA's `[:80%]`, `[80%:90%]`, `[90%:]` in record order; records are ordered
// by metadata file number, then line.
#include <fmt/ranges.h>
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/check.h"
#include "core/files.h"
#include "tasks/pathfinder/pathfinder.h"

namespace lra::pathfinder {

namespace fs = std::filesystem;

namespace {

constexpr size_t kImagesPerFolder = 1000;

struct Record {
  std::string path;
  int32_t label = 0;
  uint8_t margin = 0;
  size_t meta = 0;  // index into the metadata file list
  size_t line = 0;  // 1-based
  uintmax_t bytes = 0;
};

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Metadata files in numeric order of their names (0.npy, 1.npy, ..., 10.npy); other names after,
// alphabetically.
std::vector<fs::path> metadata_files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".npy" && it->is_regular_file(ec)) files.push_back(it->path());
  LRA_CHECK(!ec, "cannot list the Pathfinder metadata folder '{}': {}", dir.string(), ec.message());
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    const std::string sa = a.stem().string(), sb = b.stem().string();
    const bool na = all_digits(sa), nb = all_digits(sb);
    if (na != nb) return na;
    if (na && sa.size() != sb.size()) return sa.size() < sb.size();
    return sa < sb;
  });
  return files;
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LRA_CHECK(f.good(), "cannot open '{}': {}", path, std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  LRA_CHECK(!f.bad(), "error while reading '{}'", path);
  return s;
}

std::vector<std::string> split_spaces(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t sp = line.find(' ', start);
    fields.push_back(line.substr(start, sp == std::string::npos ? std::string::npos : sp - start));
    if (sp == std::string::npos) break;
    start = sp + 1;
  }
  return fields;
}

void parse_metadata(const std::string& path, const fs::path& dir, size_t meta, std::vector<Record>& out) {
  const std::string text = read_bytes(path);
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::vector<std::string> f = split_spaces(line);
    auto fail = [&](const std::string& what) {
      LRA_FAIL(
          "malformed Pathfinder metadata line in '{}', line {}: {} (line: '{}'); each line should read "
          "`imgs/<k> sample_<i>.png <i> <label> ...` with fields separated by single spaces",
          path, line_no, what, line.size() > 80 ? line.substr(0, 80) + "..." : line);
    };
    if (f.size() < 4)
      fail(fmt::format("expected at least 4 space-separated fields (subdir, file name, index, label), found {}",
                       f.size()));
    if (f[0].empty() || f[1].empty()) fail("the subfolder or file name is empty");
    if (f[3] != "0" && f[3] != "1") fail(fmt::format("the label (field 4) is '{}', not 0 or 1", f[3]));
    Record r;
    r.path = (dir / f[0] / f[1]).string();
    r.label = f[3] == "1" ? 1 : 0;
    if (f.size() > 9 && all_digits(f[9]) && f[9].size() < 4) r.margin = static_cast<uint8_t>(std::stoi(f[9]));
    r.meta = meta;
    r.line = line_no;
    out.push_back(std::move(r));
  }
}

// Runs f(i) for i in [0, n) on all threads; the exception of the smallest failing i is rethrown.
template <class F>
void parallel_for(size_t n, F&& f) {
  std::vector<std::string> errors(n);
  bool any = false;
#pragma omp parallel for schedule(dynamic, 64) reduction(|| : any)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
    try {
      f(static_cast<size_t>(i));
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(i)] = e.what();
      any = true;
    }
  }
  if (!any) return;
  for (const std::string& e : errors)
    if (!e.empty()) throw Error(e);
}

std::string python_float(double v) {
  std::string s = fmt::format("{}", v);
  return s.find_first_of(".e") == std::string::npos ? s + ".0" : s;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  LRA_CHECK(f != nullptr, "cannot create '{}': {}", path.string(), std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  LRA_CHECK(ok && closed, "could not write '{}': {}; free some space or choose another output folder", path.string(),
            std::strerror(ok ? errno : err));
}

bool empty_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && fs::directory_iterator(p, ec) == fs::directory_iterator();
}

}  // namespace

std::string encode_png(const uint8_t* pixels, int width, int height) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(width);
  img.height = static_cast<png_uint_32>(height);
  img.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  LRA_CHECK(png_image_write_to_memory(&img, nullptr, &size, 0, pixels, 0, nullptr) != 0,
            "libpng could not encode a {}x{} image: {}", width, height, img.message);
  std::string out(size, '\0');
  LRA_CHECK(png_image_write_to_memory(&img, out.data(), &size, 0, pixels, 0, nullptr) != 0,
            "libpng could not encode a {}x{} image: {}", width, height, img.message);
  out.resize(size);
  return out;
}

std::vector<uint8_t> decode_png(const std::string& bytes, const std::string& name, int width, int height) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  LRA_CHECK(png_image_begin_read_from_memory(&img, bytes.data(), bytes.size()) != 0,
            "cannot decode the PNG '{}': {}; the file is damaged or not a PNG (re-extract it from the release)", name,
            img.message);
  if (img.width != static_cast<png_uint_32>(width) || img.height != static_cast<png_uint_32>(height)) {
    const png_uint_32 w = img.width, h = img.height;
    png_image_free(&img);
    LRA_FAIL(
        "the PNG '{}' is {}x{} pixels but resolution {} needs {}x{}; check the resolution option or "
        "--data-dir",
        name, w, h, width, width, height);
  }
  img.format = PNG_FORMAT_GRAY;
  std::vector<uint8_t> out(PNG_IMAGE_SIZE(img));
  LRA_CHECK(png_image_finish_read(&img, nullptr, out.data(), 0, nullptr) != 0,
            "cannot decode the PNG '{}': {}; the file is truncated or damaged (re-extract it from the release)", name,
            img.message);
  return out;
}

std::string locate_released(const std::string& data_dir, int resolution, int contour_length,
                            std::vector<std::string>& tried) {
  const fs::path root(data_dir);
  const std::string res = fmt::format("pathfinder{}", resolution), diff = difficulty_folder(contour_length);
  const fs::path candidates[] = {root, root / diff, root / res / diff,
                                 root / "lra_release" / "lra_release" / res / diff, root / "lra_release" / res / diff};
  for (const fs::path& c : candidates) {
    tried.push_back(c.string());
    std::error_code ec;
    if (fs::is_directory(c / "metadata", ec)) return c.string();
  }
  return "";
}

namespace {

// A released folder's non-empty images in record order, and the part of them each split takes.
struct Index {
  std::vector<std::string> metadata_files;
  std::vector<Record> kept;
  size_t total = 0;                           // non-empty images
  size_t begin[3] = {}, count[3] = {};        // train, val, test: the first image in `kept` and how many
};

// Reads the metadata, drops empty images as LRA does and applies LRA's [:80%], [80%:90%], [90%:] split
// (boundaries rounded to the nearest image); n > 0 keeps the first n images of a split.
Index index_released(const std::string& dir, int64_t n_train, int64_t n_val, int64_t n_test) {
  const fs::path root(dir);
  std::error_code ec;
  LRA_CHECK(fs::is_directory(root / "metadata", ec),
            "'{}' has no metadata/ folder; a released Pathfinder folder holds metadata/<k>.npy and imgs/<k>/", dir);
  const std::vector<fs::path> files = metadata_files_in(root / "metadata");
  LRA_CHECK(!files.empty(), "the Pathfinder metadata folder '{}' holds no .npy files", (root / "metadata").string());
  Index idx;
  std::vector<Record> records;
  for (size_t k = 0; k < files.size(); ++k) {
    idx.metadata_files.push_back(files[k].string());
    parse_metadata(files[k].string(), root, k, records);
  }
  parallel_for(records.size(), [&](size_t i) {
    Record& r = records[i];
    std::error_code e;
    r.bytes = fs::file_size(r.path, e);
    LRA_CHECK(!e, "'{}' (line {}) names the image '{}', which cannot be read: {}", idx.metadata_files[r.meta], r.line,
              r.path, e.message());
  });
  for (Record& r : records)
    if (r.bytes > 0) idx.kept.push_back(std::move(r));
  LRA_CHECK(!idx.kept.empty(), "the Pathfinder folder '{}' lists no non-empty images", dir);
  const size_t n = idx.total = idx.kept.size();
  const size_t b1 = (n * 80 + 50) / 100, b2 = (n * 90 + 50) / 100;
  const size_t begin[3] = {0, b1, b2}, end[3] = {b1, b2, n};
  const int64_t want[3] = {n_train, n_val, n_test};
  const char* names[3] = {"n_train", "n_val", "n_test"};
  const char* splits[3] = {"train", "val", "test"};
  for (int s = 0; s < 3; ++s) {
    const size_t available = end[s] - begin[s];
    LRA_CHECK(want[s] >= 0, "{} must not be negative (got {}); use 0 for all", names[s], want[s]);
    LRA_CHECK(static_cast<size_t>(want[s]) <= available,
              "{} = {} but the {} split of '{}' has only {} images (80/10/10 of {} non-empty images)", names[s],
              want[s], splits[s], dir, available, n);
    idx.begin[s] = begin[s];
    idx.count[s] = want[s] > 0 ? static_cast<size_t>(want[s]) : available;
  }
  return idx;
}

}  // namespace

ReleasedCounts count_released(const std::string& dir, int64_t n_train, int64_t n_val, int64_t n_test) {
  const Index idx = index_released(dir, n_train, n_val, n_test);
  ReleasedCounts c;
  c.train = static_cast<int64_t>(idx.count[0]);
  c.val = static_cast<int64_t>(idx.count[1]);
  c.test = static_cast<int64_t>(idx.count[2]);
  c.total = static_cast<int64_t>(idx.total);
  c.metadata_files = idx.metadata_files;
  return c;
}

Dataset read_released(const std::string& dir, const Params& p, int64_t n_train, int64_t n_val, int64_t n_test,
                      std::vector<std::string>& metadata_files) {
  const Index idx = index_released(dir, n_train, n_val, n_test);
  metadata_files = idx.metadata_files;
  Dataset d;
  d.params = p;
  ImageSet* sets[3] = {&d.train, &d.val, &d.test};
  const size_t area = static_cast<size_t>(p.resolution) * static_cast<size_t>(p.resolution);
  std::vector<std::pair<ImageSet*, size_t>> jobs;  // (set, index within it) per image to decode
  std::vector<const Record*> job_records;
  for (int s = 0; s < 3; ++s) {
    const size_t count = idx.count[s];
    ImageSet& set = *sets[s];
    set.resolution = p.resolution;
    set.pixels.resize(count * area);
    set.labels.resize(count);
    set.margins.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const Record& r = idx.kept[idx.begin[s] + i];
      set.labels[i] = r.label;
      set.margins[i] = r.margin;
      set.origins.add(idx.metadata_files[r.meta], "line", static_cast<int64_t>(r.line));
      jobs.emplace_back(&set, i);
      job_records.push_back(&r);
    }
  }
  parallel_for(jobs.size(), [&](size_t j) {
    const Record& r = *job_records[j];
    std::vector<uint8_t> px;
    try {
      px = decode_png(read_bytes(r.path), r.path, p.resolution, p.resolution);
    } catch (const Error& e) {
      throw Error(fmt::format("{} [listed in '{}', line {}]", e.what(), metadata_files[r.meta], r.line));
    }
    auto& [set, i] = jobs[j];
    std::copy(px.begin(), px.end(), set->pixels.begin() + static_cast<std::ptrdiff_t>(i * area));
  });
  return d;
}

std::string write_released_layout(const Dataset& d, const std::string& root) {
  const Params& p = d.params;
  const fs::path parent = fs::path(root) / fmt::format("pathfinder{}", p.resolution);
  const std::string folder = difficulty_folder(p.contour_length);
  const fs::path dir = parent / folder;
  std::error_code ec;
  LRA_CHECK(!fs::exists(dir, ec) || empty_dir(dir),
            "'{}' already exists and is not empty; remove it or write the data somewhere else", dir.string());
  make_dirs(parent.string());
  const fs::path tmp = parent / fmt::format(".{}.tmp.{}", folder, static_cast<long>(getpid()));
  fs::remove_all(tmp, ec);
  const ImageSet* sets[3] = {&d.train, &d.val, &d.test};
  std::vector<std::pair<const ImageSet*, size_t>> all;
  for (const ImageSet* s : sets) {
    LRA_CHECK(s->size() == 0 || s->resolution == p.resolution,
              "write_released_layout: images of resolution {} in a dataset of resolution {}", s->resolution,
              p.resolution);
    for (size_t i = 0; i < s->size(); ++i) all.emplace_back(s, i);
  }
  const size_t folders = (all.size() + kImagesPerFolder - 1) / kImagesPerFolder;
  try {
    make_dirs((tmp / "metadata").string());
    for (size_t k = 0; k < folders; ++k) make_dirs((tmp / "imgs" / std::to_string(k)).string());
    parallel_for(all.size(), [&](size_t g) {
      const auto& [set, i] = all[g];
      const fs::path file =
          tmp / "imgs" / std::to_string(g / kImagesPerFolder) / fmt::format("sample_{}.png", g % kImagesPerFolder);
      write_bytes(file, encode_png(set->image(i), p.resolution, p.resolution));
    });
    const std::string fixed = fmt::format("{} {} {} {} {}", python_float(p.continuity), p.contour_length,
                                          p.distractor_length_field, p.paddle_length, p.paddle_thickness);
    for (size_t k = 0; k < folders; ++k) {
      std::string text;
      for (size_t g = k * kImagesPerFolder; g < std::min(all.size(), (k + 1) * kImagesPerFolder); ++g) {
        const auto& [set, i] = all[g];
        const size_t idx = g % kImagesPerFolder;
        text += fmt::format("imgs/{} sample_{}.png {} {} {} {} 1\n", k, idx, idx, set->labels[i], fixed,
                            static_cast<int>(set->margins[i]));
      }
      write_bytes(tmp / "metadata" / fmt::format("{}.npy", k), text);
    }
    if (fs::exists(dir, ec)) fs::remove(dir, ec);
    fs::rename(tmp, dir, ec);
    LRA_CHECK(!ec, "could not move the Pathfinder images from '{}' to '{}': {}", tmp.string(), dir.string(),
              ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return dir.string();
}

}  // namespace lra::pathfinder
