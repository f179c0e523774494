// Token + position embedding on the GPU, as lib/ops/embedding.cpp.  x: (rows, D), wte: (V, D),
// pos: (P, D), cls: (D); row r = row_offsets[b] + p of example b, has_cls = (cls != nullptr):
//   forward:  x[r] = cls + pos[0]                                       if has_cls and p == 0
//                  = wte[tokens[tok_offsets[b] + p - has_cls]] + pos[p]   otherwise
//   backward (has_cls = (dcls != nullptr), as on the CPU):
//             dwte[tok] += sum of dx[r] over the rows with that token,  dcls += sum_b dx[row(b, 0)],
//             dpos[p] += sum_b dx[row(b, p)]
//
// The backward is deterministic (the same bits on every run) without float atomics:
//   1. key[r] = tok + 1, or 0 for a CLS row; a stable radix sort of (key, r) groups each token's rows
//      in increasing row order (runs of equal keys; the run of key 0 goes to dcls).
//   2. The sorted rows are cut into chunks of K positions (K >= D, a multiple of 32). One thread per
//      (chunk, column) adds its chunk's rows in order; a run that starts and ends inside the chunk is
//      added to its destination at once, the chunk's first and last segments of runs that cross a chunk
//      border are written to first[chunk] / last[chunk].
//   3. One block per run that crosses a chunk border (found at the chunk where it starts) adds those
//      chunk sums in a fixed order (32 strided groups, then the groups in order) to the destination.
//   dpos: one thread per (p, column) adds the examples' rows in order of b (the CPU's order).
// Workspace (embedding_backward_workspace(rows)): keys and rows before and after the sort, the chunk
// sums (at most 4 rows floats: with K >= D and at least two chunks, 2 chunks D < 4 rows), the longest
// example's row count, and CUB's sort storage.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>

#include "core/arena.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"
#include "cuda/ops.h"

namespace lra::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kChunkGroup = 8;   // chunks per block in the chunk-sum kernel (block (32, kChunkGroup))
constexpr int kCombineGroups = 32;  // strided groups per crossing run in the combine kernel (block (32, 32))

constexpr size_t kWorkspaceAlign = 256;  // each part of the embedding workspace

// The workspace's parts, carved in this order.
struct EmbedWork {
  uint32_t* keys_in = nullptr;
  uint32_t* keys = nullptr;  // sorted
  int32_t* rows_in = nullptr;
  int32_t* rows = nullptr;  // sorted by key, stable
  float* partials = nullptr;
  int32_t* max_len = nullptr;
  void* sort_temp = nullptr;
  size_t sort_bytes = 0;
  size_t total = 0;
};

size_t sort_temp_bytes(int64_t rows) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), static_cast<int>(rows)));
  return bytes;
}

EmbedWork carve(void* base, int64_t rows) {
  EmbedWork w;
  ScratchCarver sc(base, kWorkspaceAlign);
  const size_t n = static_cast<size_t>(rows);
  w.keys_in = sc.take<uint32_t>(n);
  w.keys = sc.take<uint32_t>(n);
  w.rows_in = sc.take<int32_t>(n);
  w.rows = sc.take<int32_t>(n);
  w.partials = sc.take<float>(4 * n);
  w.max_len = sc.take<int32_t>(1);
  w.sort_bytes = sort_temp_bytes(rows);
  w.sort_temp = sc.take<char>(w.sort_bytes);
  w.total = sc.used();
  return w;
}

// grid (gx, B), block kThreads: the blocks of example b cover its rows x D entries.
__global__ void embedding_forward_kernel(float* __restrict__ x, const int32_t* __restrict__ tokens,
                                         const int32_t* __restrict__ tok_offsets,
                                         const int32_t* __restrict__ row_offsets, const float* __restrict__ wte,
                                         const float* __restrict__ pos, const float* __restrict__ cls, int D) {
  const int b = blockIdx.y;
  const int has_cls = cls != nullptr ? 1 : 0;
  const int64_t r0 = row_offsets[b];
  const int64_t count = (row_offsets[b + 1] - r0) * D;
  const int32_t* tok = tokens + tok_offsets[b];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const int64_t p = i / D;
    const int c = static_cast<int>(i - p * D);
    const float* src = (has_cls && p == 0) ? cls : wte + static_cast<int64_t>(tok[p - has_cls]) * D;
    x[(r0 + p) * D + c] = pos != nullptr ? src[c] + pos[p * D + c] : src[c];
  }
}

// keys_in[r] = token + 1 (0 for a CLS row), rows_in[r] = r.
__global__ void embedding_keys_kernel(uint32_t* __restrict__ keys_in, int32_t* __restrict__ rows_in,
                                      const int32_t* __restrict__ tokens, const int32_t* __restrict__ tok_offsets,
                                      const int32_t* __restrict__ row_offsets, int B, int has_cls, int64_t rows) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride) {
    const int b = example_of(row_offsets, B, r);
    const int64_t p = r - row_offsets[b];
    keys_in[r] = (has_cls && p == 0) ? 0u : static_cast<uint32_t>(tokens[tok_offsets[b] + p - has_cls]) + 1u;
    rows_in[r] = static_cast<int32_t>(r);
  }
}

__device__ __forceinline__ float* destination(uint32_t key, float* dwte, float* dcls, int D) {
  return key == 0 ? dcls : dwte + static_cast<int64_t>(key - 1) * D;
}

// grid (ceil(chunks / kChunkGroup), ceil(D / 32)), block (32, kChunkGroup): thread (column, chunk).
__global__ void embedding_chunk_sums_kernel(float* __restrict__ dwte, float* __restrict__ dcls,
                                            float* __restrict__ first, float* __restrict__ last,
                                            const float* __restrict__ dx, const uint32_t* __restrict__ keys,
                                            const int32_t* __restrict__ rows_sorted, int64_t rows, int64_t chunks,
                                            int K, int D) {
  const int c = blockIdx.y * 32 + threadIdx.x;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kChunkGroup + threadIdx.y;
  if (c >= D || k >= chunks) return;
  const int64_t i0 = k * K;
  const int64_t i1 = i0 + K < rows ? i0 + K : rows;
  const bool from_before = i0 > 0 && keys[i0 - 1] == keys[i0];
  const bool to_after = i1 < rows && keys[i1] == keys[i1 - 1];
  float acc = 0.0f;
  int64_t start = i0;
  for (int64_t i = i0; i < i1; ++i) {
    const uint32_t key = keys[i];
    acc += dx[static_cast<int64_t>(rows_sorted[i]) * D + c];
    if (i + 1 < i1 && keys[i + 1] == key) continue;
    // The segment [start, i + 1) of key's run ends here.
    const bool head = start == i0 && from_before;
    const bool tail = i + 1 == i1 && to_after;
    if (!head && !tail)
      destination(key, dwte, dcls, D)[c] += acc;
    else if (start == i0)
      first[k * D + c] = acc;
    else
      last[k * D + c] = acc;
    acc = 0.0f;
    start = i + 1;
  }
}

// grid (chunks, ceil(D / 32)), block (32, kCombineGroups). Block k handles the run that crosses the end
// of chunk k if it starts in chunk k: its chunk sums k0 = k .. k1 are added in groups j = ty, ty + 32, ...
// then the groups in order.
__global__ void embedding_combine_kernel(float* __restrict__ dwte, float* __restrict__ dcls,
                                         const float* __restrict__ first, const float* __restrict__ last,
                                         const uint32_t* __restrict__ keys, int64_t rows, int K, int D) {
  __shared__ float part[kCombineGroups][33];
  const int64_t k = blockIdx.x;
  const int64_t i0 = k * K, i1 = i0 + K;
  if (i1 >= rows) return;
  const uint32_t key = keys[i1 - 1];
  if (keys[i1] != key) return;               // the chunk's last run ends inside it
  if (i0 > 0 && keys[i0 - 1] == key) return;  // the run started in an earlier chunk, whose block does it
  // The run's first position in [i0, i1) and its end in (i1, rows].
  int64_t lo = i0, hi = i1 - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (keys[mid] == key)
      hi = mid;
    else
      lo = mid + 1;
  }
  const int64_t run_start = lo;
  lo = i1;
  hi = rows;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (keys[mid] == key)
      lo = mid + 1;
    else
      hi = mid;
  }
  const int64_t k1 = (lo - 1) / K;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.y * 32 + tx;
  float acc = 0.0f;
  if (c < D) {
    for (int64_t j = k + ty; j <= k1; j += kCombineGroups) {
      const float* src = (j == k && run_start != i0) ? last : first;
      acc += src[j * D + c];
    }
  }
  part[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < D) {
    float total = 0.0f;
    for (int g = 0; g < kCombineGroups; ++g) total += part[g][tx];
    destination(key, dwte, dcls, D)[c] += total;
  }
}

// *max_len = the longest example's row count. One block of kThreads; integer max, order-free.
__global__ void max_length_kernel(int32_t* __restrict__ max_len, const int32_t* __restrict__ row_offsets, int B) {
  __shared__ int32_t sm[kThreads];
  int32_t m = 0;
  for (int b = threadIdx.x; b < B; b += kThreads) m = max(m, row_offsets[b + 1] - row_offsets[b]);
  sm[threadIdx.x] = m;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) sm[threadIdx.x] = max(sm[threadIdx.x], sm[threadIdx.x + h]);
    __syncthreads();
  }
  if (threadIdx.x == 0) *max_len = sm[0];
}

// dpos[p, c] += dx[row(b, p), c] for b = 0 .. B-1 in order (examples shorter than p + 1 skipped).
// Grid-stride over max_len x D entries.
__global__ void embedding_dpos_kernel(float* __restrict__ dpos, const float* __restrict__ dx,
                                      const int32_t* __restrict__ row_offsets, const int32_t* __restrict__ max_len,
                                      int B, int D) {
  const int64_t count = static_cast<int64_t>(*max_len) * D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const int64_t p = i / D;
    const int c = static_cast<int>(i - p * D);
    float acc = dpos[i];
    for (int b = 0; b < B; ++b) {
      const int64_t r0 = row_offsets[b];
      if (p < row_offsets[b + 1] - r0) acc += dx[(r0 + p) * D + c];
    }
    dpos[i] = acc;
  }
}

void check_batch(int B, const char* op) {
  LRA_CHECK(B <= 65535, "{} on the GPU: the batch of {} examples exceeds the grid's 65535; lower batch_size", op,
            B);
}

}  // namespace

void embedding_forward(float* x, const int32_t* tokens, const int32_t* tok_offsets, const int32_t* row_offsets,
                       int B, const float* wte, const float* pos, const float* cls, int D, const Context& ctx) {
  if (B == 0 || D == 0) return;
  check_batch(B, "embedding_forward");
  // The host does not know the row count here: about 8 blocks per SM over the batch, grid-stride beyond.
  const int sms = ctx.sm_count > 0 ? ctx.sm_count : 1;
  const unsigned gx = static_cast<unsigned>((sms * 8 + B - 1) / B);
  embedding_forward_kernel<<<dim3(gx, B), kThreads, 0, ctx.stream>>>(x, tokens, tok_offsets, row_offsets, wte, pos,
                                                                     cls, D);
  CUDA_CHECK_LAUNCH();
}

size_t embedding_backward_workspace(int64_t rows) {
  LRA_CHECK(rows >= 0 && rows <= INT_MAX, "embedding_backward: {} rows exceed the sort's int range; lower "
                                          "batch_size or max_length", rows);
  return carve(nullptr, rows).total;
}

void embedding_backward(float* dwte, float* dpos, float* dcls, const float* dx, const int32_t* tokens,
                        const int32_t* tok_offsets, const int32_t* row_offsets, int B, int D, int64_t rows,
                        void* work, const Context& ctx) {
  if (B == 0 || D == 0 || rows == 0) return;
  check_batch(B, "embedding_backward");
  LRA_CHECK(rows <= INT_MAX, "embedding_backward: {} rows exceed the sort's int range; lower batch_size or "
                             "max_length", rows);
  const EmbedWork w = carve(work, rows);
  const int sms = ctx.sm_count > 0 ? ctx.sm_count : 1;

  if (dpos != nullptr) {
    max_length_kernel<<<1, kThreads, 0, ctx.stream>>>(w.max_len, row_offsets, B);
    CUDA_CHECK_LAUNCH();
    const unsigned blocks = std::min(grid_for(rows * D, kThreads), static_cast<unsigned>(sms * 8));
    embedding_dpos_kernel<<<blocks, kThreads, 0, ctx.stream>>>(dpos, dx, row_offsets, w.max_len, B, D);
    CUDA_CHECK_LAUNCH();
  }

  const int has_cls = dcls != nullptr ? 1 : 0;
  embedding_keys_kernel<<<grid_for(rows, kThreads), kThreads, 0, ctx.stream>>>(w.keys_in, w.rows_in, tokens,
                                                                              tok_offsets, row_offsets, B, has_cls,
                                                                              rows);
  CUDA_CHECK_LAUNCH();
  size_t sort_bytes = w.sort_bytes;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w.sort_temp, sort_bytes, w.keys_in, w.keys, w.rows_in, w.rows,
                                             static_cast<int>(rows), 0, 32, ctx.stream));

  const int K = std::max(64, (D + 31) / 32 * 32);
  const int64_t chunks = (rows + K - 1) / K;
  // Chunk sums exist only with two chunks or more (a single chunk holds every run whole).
  float* first = chunks > 1 ? w.partials : nullptr;
  float* last = chunks > 1 ? w.partials + chunks * D : nullptr;
  const unsigned col_blocks = static_cast<unsigned>((D + 31) / 32);
  embedding_chunk_sums_kernel<<<dim3(static_cast<unsigned>((chunks + kChunkGroup - 1) / kChunkGroup), col_blocks),
                                dim3(32, kChunkGroup), 0, ctx.stream>>>(dwte, dcls, first, last, dx, w.keys, w.rows,
                                                                        rows, chunks, K, D);
  CUDA_CHECK_LAUNCH();
  if (chunks > 1) {
    embedding_combine_kernel<<<dim3(static_cast<unsigned>(chunks), col_blocks), dim3(32, kCombineGroups), 0,
                               ctx.stream>>>(dwte, dcls, first, last, w.keys, rows, K, D);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace lra::cuda
