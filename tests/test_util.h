// Helpers shared by the test files: random tensors and central finite differences.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/rng.h"

namespace lra::test {

// The exit code ctest reads as "skipped" (SKIP_RETURN_CODE, set in tests/CMakeLists.txt).
constexpr int kSkipExitCode = 77;
// How many test cases of this run skipped (LRA_SKIP).
inline int& skipped_cases() {
  static int n = 0;
  return n;
}

// Throws when two sequences cannot be compared element by element: a comparison over different sizes,
// or over nothing, must fail rather than pass.
inline void require_comparable(size_t got, size_t want, const char* what) {
  if (got != want || want == 0)
    throw std::runtime_error(fmt::format("{}: cannot compare {} values against {}", what, got, want));
}

// A fresh folder under the system temp folder, removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) {
    static int counter = 0;
    path = (std::filesystem::temp_directory_path() / fmt::format("lra-test-{}-{}-{}", name, getpid(), counter++))
               .string();
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline std::vector<double> randn(size_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed, 77);
  std::vector<double> v(n);
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Relative error of an analytic gradient against central differences of f at x (x is perturbed in place
// and restored): max |analytic - numeric| / max(|numeric|_inf, 1e-8), over `samples` random
// coordinates (all of them when n <= samples). h = 1e-6 max(1, |x_i|): error O(h^2) + O(eps |f| / h).
inline double fd_rel_error(double* x, const double* grad, size_t n, const std::function<double()>& f,
                           size_t samples = 40, uint64_t seed = 1) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  if (n > samples) {
    Rng rng(seed, 99);
    for (size_t i = 0; i < samples; ++i) std::swap(idx[i], idx[i + rng.below(n - i)]);
    idx.resize(samples);
  }
  double max_num = 0.0, max_diff = 0.0;
  for (size_t i : idx) {
    const double x0 = x[i];
    const double h = 1e-6 * std::max(1.0, std::fabs(x0));
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    const double num = (fp - fm) / (2 * h);
    max_num = std::max(max_num, std::fabs(num));
    max_diff = std::max(max_diff, std::fabs(num - grad[i]));
  }
  return max_diff / std::max(max_num, 1e-8);
}

inline double fd_rel_error(std::vector<double>& x, const std::vector<double>& grad, const std::function<double()>& f,
                           size_t samples = 40, uint64_t seed = 1) {
  return fd_rel_error(x.data(), grad.data(), x.size(), f, samples, seed);
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// The largest |a - b|; infinity where either side holds a NaN.
inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  require_comparable(a.size(), b.size(), "max_abs_diff");
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

inline double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace lra::test

// Ends the current test case as skipped, saying why (how to make it run). Only for what this machine
// lacks, never for a failure.
#define LRA_SKIP(reason)                                   \
  do {                                                     \
    WARN("skipped: " << reason);                           \
    ++::lra::test::skipped_cases();                        \
    return;                                                \
  } while (0)
