#include "train/schedule.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/check.h"

namespace lra {

std::vector<std::string> LrSchedule::known_factors() {
  return {"constant", "linear_warmup", "rsqrt_decay", "rsqrt_normalized_decay", "cosine_decay"};
}

LrSchedule::LrSchedule(const std::string& factors, double base, int64_t warmup, int64_t steps_per_cycle)
    : base_(base), warmup_(warmup), steps_per_cycle_(steps_per_cycle) {
  std::stringstream ss(factors);
  std::string f;
  const auto known = known_factors();
  while (std::getline(ss, f, '*')) {
    f.erase(0, f.find_first_not_of(" \t"));
    f.erase(f.find_last_not_of(" \t") + 1);
    LRA_CHECK(std::find(known.begin(), known.end(), f) != known.end(),
              "unknown learning-rate factor '{}' in factors='{}'; known factors: {}", f, factors,
              fmt::join(known, ", "));
    factors_.push_back(f);
  }
  LRA_CHECK(!factors_.empty(), "factors is empty; e.g. 'constant * linear_warmup * rsqrt_decay'");
  LRA_CHECK(warmup_ >= 0, "warmup must be non-negative, got {}", warmup_);
  LRA_CHECK(steps_per_cycle_ > 0 || std::find(factors_.begin(), factors_.end(), "cosine_decay") == factors_.end(),
            "cosine_decay needs steps_per_cycle > 0 (got {})", steps_per_cycle_);
}

double LrSchedule::operator()(int64_t step) const {
  const double t = static_cast<double>(step), w = static_cast<double>(warmup_);
  double lr = 1.0;
  for (const auto& f : factors_) {
    if (f == "constant") {
      lr *= base_;
    } else if (f == "linear_warmup") {
      lr *= warmup_ > 0 ? std::min(1.0, t / w) : 1.0;
    } else if (f == "rsqrt_decay") {
      lr /= std::sqrt(std::max(t, std::max(w, 1.0)));
    } else if (f == "rsqrt_normalized_decay") {
      lr *= std::sqrt(std::max(w, 1.0)) / std::sqrt(std::max(t, std::max(w, 1.0)));
    } else if (f == "cosine_decay") {
      const double progress = std::max(0.0, (t - w) / static_cast<double>(steps_per_cycle_));
      lr *= std::max(0.0, 0.5 * (1.0 + std::cos(3.141592653589793 * std::fmod(progress, 1.0))));
    }
  }
  return lr;
}

}  // namespace lra
