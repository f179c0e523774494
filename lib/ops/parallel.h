// Loop helpers for the CPU ops. Work is split so results are the same bits for a given thread count,
// and reductions over rows are split by column so they are the same bits for ANY thread count.
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

namespace lra {

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapR = Eigen::Map<MatR<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CMapR = Eigen::Map<const MatR<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// Below this many elements a loop runs on one thread (thread start-up costs more than it saves).
constexpr int64_t kParallelMin = 1 << 15;

// f(i) for i in [0, n), statically split over threads.
template <class F>
void parallel_for(int64_t n, int64_t work_per_item, F&& f) {
#pragma omp parallel for schedule(static) if (n * work_per_item >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// For each column block [c0, c1) of C columns, on its own thread: f(c0, c1). Reductions over rows
// written this way walk the rows in order, so their result does not depend on the thread count.
template <class F>
void parallel_columns(int64_t rows, int C, F&& f) {
  const int threads = (rows * C >= kParallelMin) ? omp_get_max_threads() : 1;
  const int blocks = std::max(1, std::min(threads, (C + 15) / 16));
#pragma omp parallel for schedule(static) num_threads(blocks) if (blocks > 1)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = static_cast<int>(static_cast<int64_t>(C) * blk / blocks);
    const int c1 = static_cast<int>(static_cast<int64_t>(C) * (blk + 1) / blocks);
    f(c0, c1);
  }
}

}  // namespace lra
