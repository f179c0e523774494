// Pathfinder and Path-X (LRA's `data/pathfinder.py` and the generator it names,
// drewlinsley/pathfinder `snakes2.py`): a built-in generator, its on-disk cache, and the reader and
// writer of the released layout.
//
// Format facts relied on (docs/data-formats.md sections 7.1-7.4):
// - Released layout: pathfinder{R}/{curv_baseline, curv_contour_length_9, curv_contour_length_14}/
//   metadata/<k>.npy (plain text despite the name: lines split on '\n', fields on single spaces;
//   11 fields `subdir filename img_index label continuity contour_length distractor_length
//   paddle_length paddle_thickness paddle_margin n_paddle_contrasts`) and imgs/<k>/sample_<i>.png
//   (8-bit grayscale R x R). The image is <difficulty folder>/<field 0>/<field 1>, the label is
//   field 3 (1 = the two markers lie on one path). Empty PNGs are skipped, as LRA does; LRA splits
//   the records 80/10/10 into train/val/test.
// - Tokens: the R*R pixel values 0..255, row-major; vocabulary 256; 2 classes. LRA's model masks
//   pixel value 0 as padding (`inputs > 0`); the task option zero_is_padding reproduces that.
// - Path-X is pathfinder128/curv_contour_length_14 (16,384 tokens); Pathfinder is pathfinder32 hard.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "tasks/task.h"

namespace lra::pathfinder {

constexpr int kVocabSize = 256;
constexpr int kNumClasses = 2;

// The generator's settings for one resolution and contour length (docs/data-formats.md 7.4, from LRA's
// builder docstrings and snakes2_wrapper.py's defaults).
struct Params {
  int resolution = 32;      // the image is resolution x resolution
  int contour_length = 14;  // paddles per target snake: 6 (easy), 9 (medium), 14 (hard)
  int padding = 1;          // border strip, in pixels, that no paddle may touch
  int antialias = 2;        // paddles and markers are drawn this many times larger, then shrunk
  int paddle_length = 2;
  double paddle_thickness = 0.5;
  std::vector<int> margins{1};  // the paddle margin m, drawn per image from this list
  double marker_radius = 1.5;
  int seed_distance = 7;                      // between the tails of the two target snakes
  double continuity = 1.0;                    // turn penalty: larger values give straighter snakes
  double snake_contrast = 2.0;                // distractor paddles' intensity; target paddles get it times
  double paddle_contrast = 0.75;              // ... this one
  int distractor_length = 4;                  // paddles per distractor snake (contour_length / 3, rounded down)
  int distractor_snakes = 5;                  // distractor snakes per image
  std::string distractor_length_field = "4";  // how the released metadata spells distractor_length
  int paddle_tries = 3;                       // placements tried per paddle (snakes2: max_paddle_retrial + 1)
  int distractor_tries = 5;                   // attempts per distractor snake (max_distractor_contour_retrial + 1)
  double stop_free_fraction = 0.01;           // no further distractors once less of the canvas is free
};

// "easy", "medium" or "hard" -> 6, 9 or 14; throws on anything else.
int contour_length_of(const std::string& difficulty);
// The released folder name: curv_baseline, curv_contour_length_9 or curv_contour_length_14.
std::string difficulty_folder(int contour_length);
// LRA's settings for resolution 32, 64, 128 or 256 and contour length 6, 9 or 14; throws otherwise.
Params params_for(int resolution, int contour_length);

// Images of one split, 8-bit and row-major: image i is pixels[i*R*R .. (i+1)*R*R).
struct ImageSet {
  int resolution = 0;
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  std::vector<uint8_t> margins;  // the paddle margin each image was drawn with (0 = unknown)
  Origins origins;               // per image: its metadata line (released files), or empty
  size_t size() const { return labels.size(); }
  const uint8_t* image(size_t i) const {
    return pixels.data() + i * static_cast<size_t>(resolution) * static_cast<size_t>(resolution);
  }
};

struct Dataset {
  Params params;
  ImageSet train, val, test;
};

// One image drawn with snakes2's algorithm from `rng`: two target snakes of contour_length paddles
// grown alternately from tails seed_distance apart (each paddle placed at the end of the previous
// one with a turn weighted by the continuity rule and kept clear of every other paddle's margin),
// distractor snakes, and two markers: at the tail of one target snake and at the far end of the
// same snake (label 1) or of the other (label 0). Paddles and markers are drawn `antialias` times
// larger and Lanczos-shrunk as PIL does; the composite is rescaled min..max to 0..255.
// `out` receives resolution^2 pixels; returns the label and sets `margin`.
struct Trace;
int draw_image(const Params& p, Rng& rng, uint8_t* out, int& margin, Trace* trace = nullptr);

// What draw_image reports besides the pixels, for tests and inspection.
struct Trace {
  int markers[4] = {};   // the marker centres: (y, x) of the first (a target snake's tail), then the second
  int marker_snake = 0;  // the target snake (0 or 1) whose tail holds the first marker
  // Each target snake drawn alone (no distractors, no markers) with the image's 0..255 scaling.
  std::vector<uint8_t> snakes[2];
};

struct SplitSizes {
  int64_t train = 160000, val = 20000, test = 20000;  // LRA: 200k images split 80/10/10
};

// Draws the three splits with OpenMP over images. Image i of split s (0 train, 1 val, 2 test) uses
// its own Philox stream, so the data depends only on (seed, params, s, i): not on the thread count,
// and a smaller split is a prefix of a larger one. `progress` prints a line now and then on stderr.
Dataset generate(uint64_t seed, const Params& p, const SplitSizes& sizes, bool progress = false);

// The on-disk cache of generated images (all integers little-endian):
//   "LRAPATHF" magic (8 bytes), u32 format version, u32 resolution, u32 contour_length,
//   u32 generator version, u64 seed, u64 n_train, u64 n_val, u64 n_test,
//   then per split (train, val, test): u8 labels[n], u8 margins[n], u8 pixels[n * R * R],
//   and u64 FNV-1a-64 over every byte before it.
// Written through a temporary file renamed into place; returns the file's core/files.h file_checksum.
std::string write_cache(const std::string& path, uint64_t seed, const Dataset& d);
// Reads a cache file written for exactly (seed, params, sizes). Returns false with `reason` set
// when the file is missing, damaged, short or was written for something else. `checksum` receives
// the file's core/files.h file_checksum (computed while reading).
bool read_cache(const std::string& path, uint64_t seed, const Params& p, const SplitSizes& sizes, Dataset& d,
                std::string& reason, std::string& checksum);

// The released layout under `root`: root/pathfinder{R}/<difficulty folder>/ with imgs/<k>/sample_<i>.png
// (1000 images per folder, in the order train, val, test) and metadata/<k>.npy text lines of 11
// fields. The folder is built under a temporary name and renamed into place; an existing non-empty
// folder is an error. The reader's 80/10/10 split gives back the same splits when the sizes are in
// those proportions (the default sizes are). Returns the difficulty folder.
std::string write_released_layout(const Dataset& d, const std::string& root);

// The difficulty folder for (resolution, contour_length) under data_dir: data_dir itself (when it
// holds metadata/), data_dir/<difficulty>, data_dir/pathfinder{R}/<difficulty>,
// data_dir/lra_release/lra_release/pathfinder{R}/<difficulty>, data_dir/lra_release/pathfinder{R}/...
// First match wins; "" when none matches. `tried` receives the folders looked at.
std::string locate_released(const std::string& data_dir, int resolution, int contour_length,
                            std::vector<std::string>& tried);

// Reads a released difficulty folder of p.resolution-pixel images: the metadata files in numeric
// order, their lines in order, empty PNGs skipped, split 80/10/10 (boundaries rounded to the
// nearest image); the result's params are p. n > 0 keeps only
// the first n images of a split (and decodes no others); 0 keeps all. Errors name the file (and the
// metadata line): a malformed line, a missing, unreadable or truncated PNG, a PNG of the wrong size.
// `metadata_files` receives the metadata files read, in order.
Dataset read_released(const std::string& dir, const Params& p, int64_t n_train, int64_t n_val, int64_t n_test,
                      std::vector<std::string>& metadata_files);

// What read_released(dir, p, n_train, n_val, n_test, ...) would return, without decoding an image: the
// images per split, the non-empty images listed, and the metadata files. Throws as read_released does
// on malformed metadata, a listed image that is missing, or n larger than its split.
struct ReleasedCounts {
  int64_t train = 0, val = 0, test = 0, total = 0;
  std::vector<std::string> metadata_files;
};
ReleasedCounts count_released(const std::string& dir, int64_t n_train, int64_t n_val, int64_t n_test);

// PNG helpers (libpng): 8-bit grayscale encoding, and decoding to 8-bit grayscale of a known size
// (`name` is used in messages).
std::string encode_png(const uint8_t* pixels, int width, int height);
std::vector<uint8_t> decode_png(const std::string& bytes, const std::string& name, int width, int height);

// The cache file for generated data: <cache_dir>/pathfinder/pf<R>-<difficulty>-seed<S>-train<N>-val<N>-test<N>.bin
std::string cache_path(const DataOptions& opt, const Params& p, const SplitSizes& sizes);

// The tasks' load(): the released files when locate_released finds them under opt.data_dir, else the
// generator's cache (generated and written on first use). A --data-dir without the folder is said on
// stderr and recorded in info.generator["reason"]. default_resolution fills in a task_params without one.
TaskData load(const DataOptions& opt, int default_resolution);
// The tasks' data_status(): what load() would read or generate, without generating anything.
DataStatus data_status(const DataOptions& opt, int default_resolution);

}  // namespace lra::pathfinder
