// Learning-rate schedules as in LRA's `create_learning_rate_scheduler`: a product of named factors,
// e.g. "constant * linear_warmup * rsqrt_decay" (ListOps, Text, Retrieval) or
// "constant * linear_warmup * cosine_decay" (Image, Pathfinder). The step counts from 0, so the
// first step's learning rate is 0 under linear_warmup, exactly as in LRA.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lra {

class LrSchedule {
 public:
  // Throws for an unknown factor, listing the known ones.
  LrSchedule(const std::string& factors, double base, int64_t warmup, int64_t steps_per_cycle);
  double operator()(int64_t step) const;
  static std::vector<std::string> known_factors();

 private:
  std::vector<std::string> factors_;
  double base_;
  int64_t warmup_, steps_per_cycle_;
};

}  // namespace lra
