// Where a training step's time goes (`lra bench train --breakdown`): milliseconds per phase of the
// model's forward and backward, summed while a StepProfile is attached to the model. Each phase boundary
// waits for the device (free on the CPU, whose ops return when done; a synchronisation on the GPU), then
// reads the clock.
#pragma once

#include <array>
#include <chrono>

namespace lra {

enum class Phase {
  Embedding,     // token and position embedding (forward and its gradient)
  LayerNorm,     // the blocks' and the final layer norms
  Projections,   // the q/k/v and output projections (and the rotary embedding)
  AttentionFwd,  // the attention variant's forward
  AttentionBwd,  // its backward
  Mlp,           // fc1, GELU, fc2
  Dropout,       // every dropout and the residual additions it is fused with
  PoolAndHead,   // pooling, the classifier head and the loss
  Count
};

inline const char* phase_name(Phase p) {
  static constexpr const char* kNames[] = {"embedding", "layernorm",   "projections", "attention fwd",
                                           "attention bwd", "mlp", "dropout", "pool + head + loss"};
  return kNames[static_cast<int>(p)];
}

struct StepProfile {
  std::array<double, static_cast<size_t>(Phase::Count)> ms{};
  double& operator[](Phase p) { return ms[static_cast<size_t>(p)]; }
  double total() const {
    double t = 0;
    for (double v : ms) t += v;
    return t;
  }
};

// Charges the time since the previous boundary to a phase; does nothing without a profile.
template <class Backend>
class PhaseClock {
 public:
  PhaseClock(Backend& be, StepProfile* profile) : be_(be), profile_(profile) {
    if (profile_ != nullptr) {
      be_.synchronize();
      last_ = std::chrono::steady_clock::now();
    }
  }
  void charge(Phase p) {
    if (profile_ == nullptr) return;
    be_.synchronize();
    const auto now = std::chrono::steady_clock::now();
    (*profile_)[p] += std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
  }

 private:
  Backend& be_;
  StepProfile* profile_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace lra
