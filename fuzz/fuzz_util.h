// What the fuzz targets share: a scratch folder of this process for readers that take a path, the
// multi-file input format, and the rule for what counts as a finding.
//
// A target calls the project's real reader on the bytes. An lra::Error is the reader rejecting the input
// as it documents, so expect_error() swallows it; anything else (a crash, a sanitizer report, an
// exception of another type, std::bad_alloc from a size taken on trust) leaves the target and libFuzzer
// or the replay driver reports it.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/check.h"

namespace lra::fuzz {

// Inputs that stand for several files (a folder of a dataset, several records) hold them back to back,
// separated by this line; the corpus generator writes it, and libFuzzer picks it up from the seeds.
constexpr std::string_view kPartSeparator = "\n--lra-fuzz-part--\n";

inline std::vector<std::string> split_parts(const uint8_t* data, size_t size, size_t max_parts) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t start = 0;
  while (parts.size() + 1 < max_parts) {
    const size_t at = all.find(kPartSeparator, start);
    if (at == std::string_view::npos) break;
    parts.emplace_back(all.substr(start, at - start));
    start = at + kPartSeparator.size();
  }
  parts.emplace_back(all.substr(start));
  return parts;
}

// What the corpus generator (make_corpus.cpp) writes its cache seeds for, and the targets read them with.
constexpr const char* kCacheKey = "fuzz-cache-key";
constexpr uint64_t kPathfinderSeed = 3;
constexpr int64_t kPathfinderSplits[3] = {3, 1, 1};  // train, val, test images
constexpr int kPathfinderResolution = 32, kPathfinderContourLength = 14;

// The readers use OpenMP; libFuzzer runs one input at a time, and two fuzzers share a machine.
inline const bool kOneThread = [] { return setenv("OMP_NUM_THREADS", "1", 0) == 0; }();

// This process's scratch folder (a forked libFuzzer job gets its own), emptied for every input.
inline std::filesystem::path scratch() {
  static const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("lra-fuzz-" + std::to_string(static_cast<long>(getpid())));
  static const bool cleanup = [] {
    return std::atexit([] {
             std::error_code ec;
             std::filesystem::remove_all(root, ec);
           }) == 0;
  }();
  (void)cleanup;
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  return root;
}

inline std::string write(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("fuzz: cannot write " + path.string());
  return path.string();
}

inline std::string write(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  return write(path, std::string_view(reinterpret_cast<const char*>(data), size));
}

// Runs `read`; the reader's documented rejection (lra::Error) is an expected outcome, not a finding.
template <class F>
void expect_error(F&& read) {
  try {
    read();
  } catch (const Error&) {
  }
}

// A property the reader promises of what it accepts; its failure is a finding.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: broken promise: %s\n", what);
    std::abort();
  }
}

}  // namespace lra::fuzz
