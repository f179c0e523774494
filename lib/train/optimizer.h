// AdamW over the model's contiguous parameter block, with optional global-norm gradient clipping.
// The moments live in their own planned arena.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "core/arena.h"
#include "ops/ops.h"

namespace lra {

template <class T>
class AdamWOptimizer {
 public:
  AdamWOptimizer(Backend<T>& be, int64_t n, const AdamW& hp);
  // Clips the gradients to clip_norm (when > 0) and applies one step with learning rate lr; t is the
  // 1-based update count. Returns the gradient norm before clipping. When that norm is NaN or infinite
  // nothing is updated: the parameters and moments stay as they were, for the caller to report.
  double step(T* params, T* grads, double lr, int64_t t, double clip_norm);
  T* m() { return m_; }
  T* v() { return v_; }
  int64_t size() const { return n_; }
  size_t bytes() const { return arena_.peak(); }

 private:
  Backend<T>& be_;
  int64_t n_;
  AdamW hp_;
  Arena arena_;
  T* m_ = nullptr;
  T* v_ = nullptr;
};

}  // namespace lra
