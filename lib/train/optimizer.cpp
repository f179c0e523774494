#include "train/optimizer.h"

#include <cmath>

namespace lra {

template <class T>
AdamWOptimizer<T>::AdamWOptimizer(Backend<T>& be, int64_t n, const AdamW& hp)
    : be_(be), n_(n), hp_(hp), arena_("optimizer state", be.allocator()) {
  arena_.take<T>(static_cast<size_t>(n));
  arena_.take<T>(static_cast<size_t>(n));
  arena_.reserve(arena_.used());
  m_ = arena_.take<T>(static_cast<size_t>(n));
  v_ = arena_.take<T>(static_cast<size_t>(n));
  be_.fill_zero(m_, n);
  be_.fill_zero(v_, n);
}

template <class T>
double AdamWOptimizer<T>::step(T* params, T* grads, double lr, int64_t t, double clip_norm) {
  const double norm = std::sqrt(be_.sum_squares(grads, n_));
  if (!std::isfinite(norm)) return norm;
  if (clip_norm > 0.0 && norm > clip_norm) be_.scale_inplace(grads, n_, static_cast<T>(clip_norm / norm));
  AdamW hp = hp_;
  hp.lr = lr;
  be_.adamw_update(params, grads, m_, v_, n_, hp, t);
  return norm;
}

template class AdamWOptimizer<float>;

}  // namespace lra
