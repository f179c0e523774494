// Reformer LSH attention on the GPU: the same maths, hash, sort, chunks, masks and saved state as
// lib/attn/reformer.cpp (whose header writes the maths out; the settings, the rotations' draw, the chunk
// layout and the element-wise expressions come from lib/attn/reformer.h, shared with the CPU).
//
// Per (example b, head h): n rows, mu = key mask, m = visible keys, n_h rounds, n_b buckets, tau = dk^-1/2
// (dk^1/2 with code_logit_scale), k^_j = q_j / |q_j| (norm_keys) or q_j. K is ignored.
//   hash      bucket_r(i) = first argmax of [q_i R_r | -q_i R_r], in double.
//   sort      pi_r: the visible positions by (bucket_r, position); s_r(i) = rank of (bucket_r(i), i) among
//             them; qorder_r: every position by (bucket_r, position), cut into query chunks by
//             t_r(i) = min(s_r(i) / c, nc - 1). Chunk g = r nc + t holds the keys pi_r[t c, min(t c + c, m))
//             and sees chunks g - k mod G, k = 0 .. kb (reformer::make_chunks gives c, nc, G, kb from m).
//   forward   per round r and query i, over the entries e = (r', j) of chunk g_r(i)'s look-back chunks that
//             entry_kept(j, i) keeps: S_e = tau q_i . k^_j, lse_r(i) = log sum_e exp S_e, o_r(i) =
//             sum_e exp(S_e - lse_r(i)) v_j. Then, rounds in order, LSE_i = lse_add(LSE_i, lse_r(i)) and
//             O_i = O_i e^(LSE_old - LSE_new) + o_r(i) e^(lse_r(i) - LSE_new): the CPU's online merge.
//             A query without any entry: LSE_i = +inf, O_i = v_i when alone (self_mask, i visible), else 0.
//   backward  D_i = dO_i . O_i, P_e = exp(S_e - LSE_i) (0 when LSE_i = +inf), dS_e = P_e (dO_i . v_j - D_i):
//             dq_i = tau sum_e dS_e k^_j (per round, then summed over rounds),
//             dv_j = sum_e P_e dO_i and dk^_j = tau sum_e dS_e q_i (per round of the key's entry, summed),
//             dq_j += key_grad(dk^_j, k^_j, k^_j . dk^_j, 1 / |q_j|); dv_i += dO_i when alone; dK = 0.
//
// Kernels (all on the Context's stream; grids (x, heads, examples), examples <= 65535):
//   reformer_hash        (row tiles of 8, H, B), a warp per (row, head): every round's bucket, lanes over
//                        the n_b/2 rotations, a (value, index) warp argmax that keeps the first maximum.
//   reformer_keys        (row tiles, H, B), a warp per (row, head): k^ and 1 / |q| into scratch.
//   reformer_sort        (n_h, H, B), 256 threads, one (example, head, round): a stable counting sort.
//                        Histograms of all and of visible positions per bucket (integer shared-memory
//                        atomics: exact), exclusive scans by thread 0, then tiles of 256 positions in order,
//                        each thread counting the earlier positions of its tile in its bucket (the stable
//                        rank) and the tile's last position of each bucket advancing that bucket's cursor.
//                        Writes pi_r, qorder_r, t_r along qorder_r, qstart_r (nc + 1 boundaries) and m.
//   reformer_fwd         (G_max, H, B), 128 threads, one query chunk g: query tiles of 32 gathered rows
//                        against key tiles of 32 gathered entries of each look-back chunk in shared memory,
//                        an online softmax per query (a warp per query row, lanes over the tile's entries);
//                        writes lse_r(i) and the normalised o_r(i) of its queries.
//   reformer_merge       (row tiles, H, B), a warp per (row, head): the rounds' merge above, O and LSE.
//   reformer_row_dot     (row tiles, H, B): D_i.
//   reformer_dq          (G_max, H, B), 128 threads, one query chunk: dq_i of round r, as the forward.
//   reformer_dkv         (G_max, H, B), 128 threads, one key chunk g: key tiles of 32 of its keys against the
//                        query tiles of the chunks g + k mod G (k = 0 .. kb) that see it; writes dv_j and
//                        dk^_j of round r' (a visible key is in exactly one chunk per round).
//   reformer_grad_merge  (row tiles, H, B), a warp per (row, head): sums the rounds' dq, dk^, dv in round
//                        order, applies key_grad and the alone term, zeroes dK.
// G_max, the most chunks of any example of the batch, comes from the host's offsets and key mask; blocks past
// their example's G return. The chunk kernels' shared memory is 4 (forward), 5 (dq) or 6 (dkv) tiles of 32 rows
// of head size | 1 floats plus one or two 32 x 33 score tiles (37, 45 and 58 KiB at head size 64), opted
// in past 48 KiB at construction, which fails when the device allows less.
// Every output and partial is written by exactly one thread with a fixed summation order: no float atomics,
// the same bits every run. The products run on gathered, masked rows of varying count, so they are plain
// shared-memory loops (rows padded to an odd stride: no bank conflicts) rather than cuBLAS calls.
//
// Saved (as the CPU): LSE per (row, head), then the buckets per (row, head, round). Scratch: the rotations
// (forward), m per (example, head), pi, qorder and t per (row, head, round), qstart per ((row + example),
// head, round), k^ and 1 / |q| per (row, head); the forward's lse_r and o_r per (row, head, round); the
// backward's D per (row, head) and dq, dk^, dv per (row, head, round).
// Rotations: drawn on the host by reformer::draw_rotations (the CPU's draw) into one of three pinned host
// slots owned by the variant, cached by (seed, step), and copied into scratch with cudaMemcpyAsync at each
// forward; an event after each copy guards the slot, so a slot is redrawn only once the last copy that read
// it has run (the least recently used slot: in practice its copy ran long before).
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>

#include "attn/reformer.h"
#include "core/arena.h"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_util.cuh"

namespace lra::cuda {

namespace {

using reformer::Chunks;

constexpr int kRowWarps = 8;        // rows per block of the per-row kernels (a warp each)
constexpr int kSortThreads = 256;   // threads of the sort kernel, and positions per tile
constexpr int kAttnThreads = 128;   // threads of the three chunk kernels
constexpr int kQT = 32;             // queries per tile
constexpr int kKT = 32;             // entries (keys) per tile: one per lane in the forward's row update
constexpr int kMaxBuckets = 4096;   // the sort's two histograms live in shared memory (32 KiB)

static_assert(kKT == 32, "the forward's row update gives each lane of a warp one entry of the key tile");
static_assert(kAttnThreads % 32 == 0 && kQT % (kAttnThreads / 32) == 0, "warps share the query rows evenly");

struct Params {
  const float* q;
  const float* v;
  int64_t ld_in;
  float* out;
  int64_t ld_out;
  const float* dout;
  float* grad_q;  // dq, dk, dv: (rows, ld_in) like q
  float* grad_k;
  float* grad_v;
  float* lse;       // saved: (rows, heads)
  int32_t* bucket;  // saved: per (example, head) n_h rows of n, round-major
  const double* rot;
  const int32_t* offsets;
  const uint8_t* mask;  // nullptr = every key visible
  int H, dk, dv, hashes, buckets, chunk, before;
  bool causal, self_mask, norm_keys;
  float tau;
  // scratch
  int32_t* geom;     // (B, heads): m
  int32_t* kperm;    // per round: pi_r (m entries used)
  int32_t* qorder;   // per round: every position in (bucket, position) order
  int32_t* qchunk;   // per round: t_r of qorder's positions
  int32_t* qstart;   // per round: nc + 1 boundaries of the query chunks in qorder
  float* khat;       // (rows, heads, dk)
  float* inv_norm;   // (rows, heads)
  float* dsum;       // (rows, heads): D
  float* part_o;     // (rows, heads, rounds, dv)
  float* part_lse;   // (rows, heads, rounds)
  float* part_dq;    // (rows, heads, rounds, dk)
  float* part_dkh;   // (rows, heads, rounds, dk)
  float* part_dv;    // (rows, heads, rounds, dv)
};

__device__ __forceinline__ bool visible(const uint8_t* mask, int64_t row) {
  return mask == nullptr || mask[row] != 0;
}
// Start of (example at row r0 with n rows, head h) in an array of n entries per (example, head) and round.
__device__ __forceinline__ int64_t round_base(const Params& p, int64_t r0, int n, int h, int r) {
  return (r0 * p.H + static_cast<int64_t>(h) * n) * p.hashes + static_cast<int64_t>(r) * n;
}
// Start of round r's n + 1 chunk boundaries of (example b at row r0 with n rows, head h).
__device__ __forceinline__ int64_t qstart_base(const Params& p, int64_t r0, int b, int n, int h, int r) {
  return ((r0 + b) * p.H + static_cast<int64_t>(h) * (n + 1)) * p.hashes + static_cast<int64_t>(r) * (n + 1);
}
// Index of (row, head, round) in the per-round partials.
__device__ __forceinline__ int64_t part_index(const Params& p, int64_t row, int h, int r) {
  return (row * p.H + h) * p.hashes + r;
}
__device__ __forceinline__ Chunks chunks_of(const Params& p, int m) {
  return reformer::make_chunks(m, p.chunk, p.buckets, p.hashes, p.before);
}

// Bump allocation of a kernel's dynamic shared memory, 16-byte aligned; with base == nullptr it only
// counts (the host sizes the launch with the same function the kernel carves with).
struct Carver {
  char* base;
  size_t used = 0;
  template <class E>
  __host__ __device__ E* take(size_t n) {
    E* ptr = base != nullptr ? reinterpret_cast<E*>(base + used) : nullptr;
    used += (n * sizeof(E) + 15) & ~static_cast<size_t>(15);
    return ptr;
  }
};

// Row stride of a tile of d columns in shared memory: odd, so that the 32 rows of a tile read at one column
// fall in 32 different banks.
__host__ __device__ __forceinline__ int pad(int d) { return d | 1; }

// ---------------------------------------------------------------- per-row kernels

// (b, h, i) of this warp in a (row tiles, H, B) grid; false when the row is past its example.
struct RowItem {
  int b, h, i, n, lane;
  int64_t r0, row;
};
__device__ __forceinline__ bool row_item(const Params& p, RowItem& it) {
  it.b = blockIdx.z;
  it.h = blockIdx.y;
  it.i = blockIdx.x * kRowWarps + (threadIdx.x >> 5);
  it.lane = threadIdx.x & 31;
  it.r0 = p.offsets[it.b];
  it.n = p.offsets[it.b + 1] - static_cast<int>(it.r0);
  it.row = it.r0 + it.i;
  return it.i < it.n;
}

// bucket_r(i) for every round r: lane l takes rotations l, l + 32, ...; the warp keeps the first maximum.
__global__ void __launch_bounds__(kRowWarps * 32) reformer_hash(Params p) {
  RowItem it;
  if (!row_item(p, it)) return;
  const int half = p.buckets / 2;
  const float* q = p.q + it.row * p.ld_in + static_cast<int64_t>(it.h) * p.dk;
  for (int r = 0; r < p.hashes; ++r) {
    const double* R = p.rot + static_cast<int64_t>(r) * p.dk * half;
    double top = 0.0;
    int best = -1;  // none yet
    for (int k = it.lane; k < half; k += 32) {
      double y = 0.0;
      for (int f = 0; f < p.dk; ++f) y = fma(static_cast<double>(q[f]), R[static_cast<int64_t>(f) * half + k], y);
      if (best < 0 || reformer::bucket_beats(y, k, top, best)) {
        top = y;
        best = k;
      }
      if (reformer::bucket_beats(-y, k + half, top, best)) {
        top = -y;
        best = k + half;
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const double ot = __shfl_xor_sync(0xffffffffu, top, off);
      const int ob = __shfl_xor_sync(0xffffffffu, best, off);
      if (ob >= 0 && (best < 0 || reformer::bucket_beats(ot, ob, top, best))) {
        top = ot;
        best = ob;
      }
    }
    if (it.lane == 0) p.bucket[round_base(p, it.r0, it.n, it.h, r) + it.i] = best;
  }
}

// k^_i and 1 / |q_i|.
__global__ void __launch_bounds__(kRowWarps * 32) reformer_keys(Params p) {
  RowItem it;
  if (!row_item(p, it)) return;
  const float* q = p.q + it.row * p.ld_in + static_cast<int64_t>(it.h) * p.dk;
  float ss = 0.0f;
  for (int f = it.lane; f < p.dk; f += 32) ss = fmaf(q[f], q[f], ss);
  ss = warp_sum(ss);
  const float inv = reformer::inv_norm(sqrtf(ss));
  const int64_t rh = it.row * p.H + it.h;
  if (it.lane == 0) p.inv_norm[rh] = inv;
  float* kh = p.khat + rh * p.dk;
  for (int f = it.lane; f < p.dk; f += 32) kh[f] = p.norm_keys ? q[f] * inv : q[f];
}

// ---------------------------------------------------------------- sort

// Round r of (b, h): pi_r, qorder_r, t_r along qorder_r, qstart_r; block r = 0 also stores m.
__global__ void __launch_bounds__(kSortThreads) reformer_sort(Params p) {
  extern __shared__ int32_t sort_smem[];
  __shared__ int32_t tile_bucket[kSortThreads];
  __shared__ int32_t tile_vis[kSortThreads];
  __shared__ int32_t total_visible;
  const int r = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int64_t r0 = p.offsets[b];
  const int n = p.offsets[b + 1] - static_cast<int>(r0);
  if (n == 0) {
    if (r == 0 && tid == 0) p.geom[b * p.H + h] = 0;
    return;
  }
  int32_t* vcount = sort_smem;            // visible keys per bucket, then the next visible slot in pi_r
  int32_t* acount = sort_smem + p.buckets;  // all positions per bucket, then the next slot in qorder_r
  const int32_t* bucket = p.bucket + round_base(p, r0, n, h, r);
  for (int k = tid; k < p.buckets; k += kSortThreads) {
    vcount[k] = 0;
    acount[k] = 0;
  }
  __syncthreads();
  for (int i = tid; i < n; i += kSortThreads) {
    const int k = bucket[i];
    atomicAdd(&acount[k], 1);
    if (visible(p.mask, r0 + i)) atomicAdd(&vcount[k], 1);
  }
  __syncthreads();
  if (tid == 0) {
    int v = 0, a = 0;
    for (int k = 0; k < p.buckets; ++k) {
      const int nv = vcount[k], na = acount[k];
      vcount[k] = v;
      acount[k] = a;
      v += nv;
      a += na;
    }
    total_visible = v;
    if (r == 0) p.geom[b * p.H + h] = v;
  }
  __syncthreads();
  const Chunks ch = chunks_of(p, total_visible);
  if (ch.m == 0) return;  // the same for every thread: no chunks
  const int64_t base = round_base(p, r0, n, h, r);
  int32_t* kperm = p.kperm + base;
  int32_t* qorder = p.qorder + base;
  int32_t* qchunk = p.qchunk + base;
  for (int t0 = 0; t0 < n; t0 += kSortThreads) {
    const int i = t0 + tid, tn = min(kSortThreads, n - t0);
    const bool active = i < n;
    const int k = active ? bucket[i] : -1;
    const int vis = active && visible(p.mask, r0 + i) ? 1 : 0;
    tile_bucket[tid] = k;
    tile_vis[tid] = vis;
    __syncthreads();
    int before_all = 0, before_vis = 0;
    bool last = true;  // no later position of this tile in the same bucket
    if (active) {
      for (int u = 0; u < tid; ++u)
        if (tile_bucket[u] == k) {
          ++before_all;
          before_vis += tile_vis[u];
        }
      for (int u = tid + 1; u < tn && last; ++u) last = tile_bucket[u] != k;
      const int s = vcount[k] + before_vis;  // s_r(i)
      if (vis) kperm[s] = i;
      const int f = acount[k] + before_all;
      qorder[f] = i;
      qchunk[f] = reformer::query_chunk(ch, s);
    }
    __syncthreads();  // every thread has read the cursors before they move
    if (active && last) {
      vcount[k] += before_vis + vis;
      acount[k] += before_all + 1;
    }
    __syncthreads();  // the cursors have moved and the tile arrays are free
  }
  // t_r grows along qorder_r: chunk t's queries start at the first f with t_r >= t (qstart[nc] = n).
  int32_t* qstart = p.qstart + qstart_base(p, r0, b, n, h, r);
  for (int f = tid; f < n; f += kSortThreads) {
    const int tf = qchunk[f], tp = f > 0 ? qchunk[f - 1] : -1;
    for (int t = tp + 1; t <= tf; ++t) qstart[t] = f;
    if (f == n - 1)
      for (int t = tf + 1; t <= ch.nc; ++t) qstart[t] = n;
  }
}

// ---------------------------------------------------------------- chunk kernels

// The (example, head, chunk g) of a block of a (G_max, H, B) grid; false when g is past the example's chunks.
struct ChunkItem {
  int b, h, g, r, n;  // r: the round of chunk g
  int64_t r0;
  Chunks ch;
};
__device__ __forceinline__ bool chunk_item(const Params& p, ChunkItem& c) {
  c.b = blockIdx.z;
  c.h = blockIdx.y;
  c.g = blockIdx.x;
  c.r0 = p.offsets[c.b];
  c.n = p.offsets[c.b + 1] - static_cast<int>(c.r0);
  if (c.n == 0) return false;
  c.ch = chunks_of(p, p.geom[c.b * p.H + c.h]);
  if (c.ch.m == 0 || c.g >= c.ch.G) return false;
  c.r = c.g / c.ch.nc;
  return true;
}
// The query range [qs, qe) of chunk g in round gr's qorder, and that qorder.
__device__ __forceinline__ const int32_t* chunk_queries(const Params& p, const ChunkItem& c, int g, int* qs,
                                                        int* qe) {
  const int gr = g / c.ch.nc, gt = g % c.ch.nc;
  const int32_t* qstart = p.qstart + qstart_base(p, c.r0, c.b, c.n, c.h, gr);
  *qs = qstart[gt];
  *qe = qstart[gt + 1];
  return p.qorder + round_base(p, c.r0, c.n, c.h, gr);
}
// The key range [lo, hi) of chunk g in round gr's pi, and that pi.
__device__ __forceinline__ const int32_t* chunk_keys(const Params& p, const ChunkItem& c, int g, int* lo, int* hi) {
  const int gr = g / c.ch.nc, gt = g % c.ch.nc;
  *lo = gt * c.ch.c;
  *hi = min(*lo + c.ch.c, c.ch.m);
  return p.kperm + round_base(p, c.r0, c.n, c.h, gr);
}

// Loads `count` (<= tile) gathered rows pos[a] of (row-major, stride ld, head column offset col0) into a
// tile of `tile` rows x d columns (stride pad(d)), times scale; rows past count are zero.
__device__ __forceinline__ void load_rows(float* __restrict__ s, const float* __restrict__ g, int64_t ld,
                                          int64_t col0, int64_t r0, const int32_t* pos, int count, int tile, int d,
                                          float scale) {
  const int sd = pad(d);
  for (int idx = threadIdx.x; idx < tile * d; idx += blockDim.x) {
    const int a = idx / d, f = idx % d;
    s[a * sd + f] = a < count ? g[(r0 + pos[a]) * ld + col0 + f] * scale : 0.0f;
  }
}
__device__ __forceinline__ void zero_tile(float* __restrict__ s, int tile, int d) {
  const int sd = pad(d);
  for (int idx = threadIdx.x; idx < tile * d; idx += blockDim.x) s[(idx / d) * sd + idx % d] = 0.0f;
}
// sum_f A[a][f] B[e][f] over d columns of two padded tiles.
__device__ __forceinline__ float row_dot(const float* __restrict__ A, const float* __restrict__ B, int a, int e,
                                         int d) {
  const int sd = pad(d);
  float s = 0.0f;
  for (int f = 0; f < d; ++f) s = fmaf(A[a * sd + f], B[e * sd + f], s);
  return s;
}

struct FwdSmem {
  float *qs, *ks, *vs, *s, *os, *rm, *rl, *ra;
  int32_t *qpos, *kpos;
};
__host__ __device__ inline size_t carve_fwd(char* base, int dk, int dv, FwdSmem* m) {
  Carver c{base};
  m->qs = c.take<float>(static_cast<size_t>(kQT) * pad(dk));  // tau q
  m->ks = c.take<float>(static_cast<size_t>(kKT) * pad(dk));  // k^
  m->vs = c.take<float>(static_cast<size_t>(kKT) * pad(dv));
  m->s = c.take<float>(static_cast<size_t>(kQT) * (kKT + 1));  // scores, then exp(S - running max)
  m->os = c.take<float>(static_cast<size_t>(kQT) * pad(dv));  // unnormalised output, rescaled as the max grows
  m->rm = c.take<float>(kQT);                                  // running max
  m->rl = c.take<float>(kQT);                                  // running sum
  m->ra = c.take<float>(kQT);                                  // this tile's rescale factor
  m->qpos = c.take<int32_t>(kQT);
  m->kpos = c.take<int32_t>(kKT);
  return c.used;
}

// lse_r(i) and o_r(i) of the queries of chunk g = r nc + t.
__global__ void __launch_bounds__(kAttnThreads) reformer_fwd(Params p) {
  extern __shared__ float4 fwd_smem4[];
  ChunkItem c;
  if (!chunk_item(p, c)) return;
  FwdSmem sm;
  carve_fwd(reinterpret_cast<char*>(fwd_smem4), p.dk, p.dv, &sm);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int pdv = pad(p.dv), sS = kKT + 1;
  int qs, qe;
  const int32_t* qorder = chunk_queries(p, c, c.g, &qs, &qe);
  for (int q0 = qs; q0 < qe; q0 += kQT) {
    const int nq = min(kQT, qe - q0);
    __syncthreads();  // the previous query tile's readers are done
    if (tid < kQT) {
      sm.qpos[tid] = tid < nq ? qorder[q0 + tid] : 0;
      sm.rm[tid] = -INFINITY;
      sm.rl[tid] = 0.0f;
    }
    __syncthreads();
    load_rows(sm.qs, p.q, p.ld_in, static_cast<int64_t>(c.h) * p.dk, c.r0, sm.qpos, nq, kQT, p.dk, p.tau);
    zero_tile(sm.os, kQT, p.dv);
    for (int k = 0; k <= c.ch.kb; ++k) {
      int lo, hi;
      const int32_t* kperm = chunk_keys(p, c, reformer::chunk_before(c.ch, c.g, k), &lo, &hi);
      for (int e0 = lo; e0 < hi; e0 += kKT) {
        const int nk = min(kKT, hi - e0);
        __syncthreads();  // the previous key tile's readers are done (and the query tile is loaded)
        if (tid < kKT) sm.kpos[tid] = tid < nk ? kperm[e0 + tid] : 0;
        __syncthreads();
        for (int idx = tid; idx < kKT * p.dk; idx += kAttnThreads) {
          const int e = idx / p.dk, f = idx % p.dk;
          sm.ks[e * pad(p.dk) + f] =
              e < nk ? p.khat[((c.r0 + sm.kpos[e]) * p.H + c.h) * p.dk + f] : 0.0f;
        }
        load_rows(sm.vs, p.v, p.ld_in, static_cast<int64_t>(c.h) * p.dv, c.r0, sm.kpos, nk, kKT, p.dv, 1.0f);
        __syncthreads();
        for (int idx = tid; idx < kQT * kKT; idx += kAttnThreads) {
          const int a = idx / kKT, e = idx % kKT;
          const bool kept =
              a < nq && e < nk && reformer::entry_kept(sm.kpos[e], sm.qpos[a], p.causal, p.self_mask);
          sm.s[a * sS + e] = kept ? row_dot(sm.qs, sm.ks, a, e, p.dk) : -INFINITY;
        }
        __syncthreads();
        for (int a = warp; a < kQT; a += kAttnThreads / 32) {
          const float s = sm.s[a * sS + lane];
          const float mold = sm.rm[a];
          const float mnew = fmaxf(mold, warp_max(s));
          const bool none = mnew == -INFINITY;  // no kept entry so far
          const float alpha = none ? 1.0f : expf(mold - mnew);
          const float pr = none ? 0.0f : expf(s - mnew);
          const float sum = warp_sum(pr);
          sm.s[a * sS + lane] = pr;
          __syncwarp();
          if (lane == 0) {
            sm.rl[a] = sm.rl[a] * alpha + sum;
            sm.rm[a] = mnew;
            sm.ra[a] = alpha;
          }
        }
        __syncthreads();
        for (int idx = tid; idx < kQT * p.dv; idx += kAttnThreads) {
          const int a = idx / p.dv, d = idx % p.dv;
          float acc = sm.os[a * pdv + d] * sm.ra[a];
          for (int e = 0; e < nk; ++e) acc = fmaf(sm.s[a * sS + e], sm.vs[e * pdv + d], acc);
          sm.os[a * pdv + d] = acc;
        }
      }
    }
    __syncthreads();
    for (int idx = tid; idx < nq * p.dv; idx += kAttnThreads) {
      const int a = idx / p.dv, d = idx % p.dv;
      const int64_t pi = part_index(p, c.r0 + sm.qpos[a], c.h, c.r);
      p.part_o[pi * p.dv + d] = sm.rm[a] == -INFINITY ? 0.0f : sm.os[a * pdv + d] / sm.rl[a];
    }
    if (tid < nq)
      p.part_lse[part_index(p, c.r0 + sm.qpos[tid], c.h, c.r)] =
          sm.rm[tid] == -INFINITY ? -INFINITY : sm.rm[tid] + logf(sm.rl[tid]);
  }
}

// O_i and LSE_i from the rounds' lse_r(i), o_r(i), merged in round order.
__global__ void __launch_bounds__(kRowWarps * 32) reformer_merge(Params p) {
  RowItem it;
  if (!row_item(p, it)) return;
  const int m = p.geom[it.b * p.H + it.h];
  const int64_t pi0 = part_index(p, it.row, it.h, 0);
  float L = -INFINITY;
  if (m > 0)
    for (int r = 0; r < p.hashes; ++r) {
      const float lr = p.part_lse[pi0 + r];
      if (lr != -INFINITY) L = reformer::lse_add(L, lr);
    }
  const bool self = L == -INFINITY && reformer::alone(p.self_mask, visible(p.mask, it.row));
  float* out = p.out + it.row * p.ld_out + static_cast<int64_t>(it.h) * p.dv;
  const float* v = p.v + it.row * p.ld_in + static_cast<int64_t>(it.h) * p.dv;
  for (int d = it.lane; d < p.dv; d += 32) {
    float o = 0.0f;
    if (L != -INFINITY) {
      float Lr = -INFINITY;
      for (int r = 0; r < p.hashes; ++r) {
        const float lr = p.part_lse[pi0 + r];
        if (lr == -INFINITY) continue;
        const float lnew = reformer::lse_add(Lr, lr);
        o = o * expf(Lr - lnew) + p.part_o[(pi0 + r) * p.dv + d] * expf(lr - lnew);
        Lr = lnew;
      }
    } else if (self) {
      o = v[d];
    }
    out[d] = o;
  }
  if (it.lane == 0) p.lse[it.row * p.H + it.h] = L == -INFINITY ? INFINITY : L;
}

// D_i = dO_i . O_i.
__global__ void __launch_bounds__(kRowWarps * 32) reformer_row_dot(Params p) {
  RowItem it;
  if (!row_item(p, it)) return;
  const float* dy = p.dout + it.row * p.ld_out + static_cast<int64_t>(it.h) * p.dv;
  const float* y = p.out + it.row * p.ld_out + static_cast<int64_t>(it.h) * p.dv;
  const float s = warp_dot(dy, y, p.dv);
  if (it.lane == 0) p.dsum[it.row * p.H + it.h] = s;
}

struct DqSmem {
  float *qs, *dos, *ks, *vs, *ds, *dqa, *lse, *dd;
  int32_t *qpos, *kpos;
};
__host__ __device__ inline size_t carve_dq(char* base, int dk, int dv, DqSmem* m) {
  Carver c{base};
  m->qs = c.take<float>(static_cast<size_t>(kQT) * pad(dk));  // tau q
  m->dos = c.take<float>(static_cast<size_t>(kQT) * pad(dv));
  m->ks = c.take<float>(static_cast<size_t>(kKT) * pad(dk));
  m->vs = c.take<float>(static_cast<size_t>(kKT) * pad(dv));
  m->ds = c.take<float>(static_cast<size_t>(kQT) * (kKT + 1));
  m->dqa = c.take<float>(static_cast<size_t>(kQT) * pad(dk));
  m->lse = c.take<float>(kQT);
  m->dd = c.take<float>(kQT);
  m->qpos = c.take<int32_t>(kQT);
  m->kpos = c.take<int32_t>(kKT);
  return c.used;
}

// Loads a query tile's positions, LSE and D (rows past nq: LSE = +inf, so P = 0).
__device__ __forceinline__ void load_query_stats(const Params& p, const ChunkItem& c, const int32_t* qorder,
                                                 int q0, int nq, int32_t* qpos, float* lse, float* dd) {
  const int tid = threadIdx.x;
  if (tid < kQT) {
    const int i = tid < nq ? qorder[q0 + tid] : 0;
    const int64_t rh = (c.r0 + i) * p.H + c.h;
    qpos[tid] = i;
    lse[tid] = tid < nq ? p.lse[rh] : INFINITY;
    dd[tid] = tid < nq ? p.dsum[rh] : 0.0f;
  }
}

// dS of query a and entry e of the loaded tiles (0 when dropped, past the tiles, or LSE = +inf); P in *pr.
__device__ __forceinline__ float entry_grad(const Params& p, const float* qs, const float* ks, const float* dos,
                                            const float* vs, const int32_t* qpos, const int32_t* kpos,
                                            const float* lse, const float* dd, int a, int e, int nq, int nk,
                                            float* pr) {
  *pr = 0.0f;
  if (a >= nq || e >= nk || lse[a] == INFINITY || !reformer::entry_kept(kpos[e], qpos[a], p.causal, p.self_mask))
    return 0.0f;
  const float P = expf(row_dot(qs, ks, a, e, p.dk) - lse[a]);
  *pr = P;
  return P * (row_dot(dos, vs, a, e, p.dv) - dd[a]);
}

// Round r's dq_i of the queries of chunk g = r nc + t.
__global__ void __launch_bounds__(kAttnThreads) reformer_dq(Params p) {
  extern __shared__ float4 dq_smem4[];
  ChunkItem c;
  if (!chunk_item(p, c)) return;
  DqSmem sm;
  carve_dq(reinterpret_cast<char*>(dq_smem4), p.dk, p.dv, &sm);
  const int tid = threadIdx.x, pdk = pad(p.dk), sS = kKT + 1;
  int qs, qe;
  const int32_t* qorder = chunk_queries(p, c, c.g, &qs, &qe);
  for (int q0 = qs; q0 < qe; q0 += kQT) {
    const int nq = min(kQT, qe - q0);
    __syncthreads();
    load_query_stats(p, c, qorder, q0, nq, sm.qpos, sm.lse, sm.dd);
    __syncthreads();
    load_rows(sm.qs, p.q, p.ld_in, static_cast<int64_t>(c.h) * p.dk, c.r0, sm.qpos, nq, kQT, p.dk, p.tau);
    load_rows(sm.dos, p.dout, p.ld_out, static_cast<int64_t>(c.h) * p.dv, c.r0, sm.qpos, nq, kQT, p.dv, 1.0f);
    zero_tile(sm.dqa, kQT, p.dk);
    for (int k = 0; k <= c.ch.kb; ++k) {
      int lo, hi;
      const int32_t* kperm = chunk_keys(p, c, reformer::chunk_before(c.ch, c.g, k), &lo, &hi);
      for (int e0 = lo; e0 < hi; e0 += kKT) {
        const int nk = min(kKT, hi - e0);
        __syncthreads();
        if (tid < kKT) sm.kpos[tid] = tid < nk ? kperm[e0 + tid] : 0;
        __syncthreads();
        for (int idx = tid; idx < kKT * p.dk; idx += kAttnThreads) {
          const int e = idx / p.dk, f = idx % p.dk;
          sm.ks[e * pdk + f] = e < nk ? p.khat[((c.r0 + sm.kpos[e]) * p.H + c.h) * p.dk + f] : 0.0f;
        }
        load_rows(sm.vs, p.v, p.ld_in, static_cast<int64_t>(c.h) * p.dv, c.r0, sm.kpos, nk, kKT, p.dv, 1.0f);
        __syncthreads();
        for (int idx = tid; idx < kQT * kKT; idx += kAttnThreads) {
          const int a = idx / kKT, e = idx % kKT;
          float pr;
          sm.ds[a * sS + e] =
              entry_grad(p, sm.qs, sm.ks, sm.dos, sm.vs, sm.qpos, sm.kpos, sm.lse, sm.dd, a, e, nq, nk, &pr);
        }
        __syncthreads();
        for (int idx = tid; idx < kQT * p.dk; idx += kAttnThreads) {
          const int a = idx / p.dk, f = idx % p.dk;
          float acc = sm.dqa[a * pdk + f];
          for (int e = 0; e < nk; ++e) acc = fmaf(sm.ds[a * sS + e], sm.ks[e * pdk + f], acc);
          sm.dqa[a * pdk + f] = acc;
        }
      }
    }
    __syncthreads();
    for (int idx = tid; idx < nq * p.dk; idx += kAttnThreads) {
      const int a = idx / p.dk, f = idx % p.dk;
      p.part_dq[part_index(p, c.r0 + sm.qpos[a], c.h, c.r) * p.dk + f] = p.tau * sm.dqa[a * pdk + f];
    }
  }
}

struct DkvSmem {
  float *ks, *vs, *qs, *dos, *ps, *ds, *dva, *dka, *lse, *dd;
  int32_t *qpos, *kpos;
};
__host__ __device__ inline size_t carve_dkv(char* base, int dk, int dv, DkvSmem* m) {
  Carver c{base};
  m->ks = c.take<float>(static_cast<size_t>(kKT) * pad(dk));
  m->vs = c.take<float>(static_cast<size_t>(kKT) * pad(dv));
  m->qs = c.take<float>(static_cast<size_t>(kQT) * pad(dk));  // tau q
  m->dos = c.take<float>(static_cast<size_t>(kQT) * pad(dv));
  m->ps = c.take<float>(static_cast<size_t>(kQT) * (kKT + 1));
  m->ds = c.take<float>(static_cast<size_t>(kQT) * (kKT + 1));
  m->dva = c.take<float>(static_cast<size_t>(kKT) * pad(dv));
  m->dka = c.take<float>(static_cast<size_t>(kKT) * pad(dk));
  m->lse = c.take<float>(kQT);
  m->dd = c.take<float>(kQT);
  m->qpos = c.take<int32_t>(kQT);
  m->kpos = c.take<int32_t>(kKT);
  return c.used;
}

// dv_j and dk^_j of round r of the keys of chunk g = r nc + t, from the query chunks g + k mod G that see it.
__global__ void __launch_bounds__(kAttnThreads) reformer_dkv(Params p) {
  extern __shared__ float4 dkv_smem4[];
  ChunkItem c;
  if (!chunk_item(p, c)) return;
  DkvSmem sm;
  carve_dkv(reinterpret_cast<char*>(dkv_smem4), p.dk, p.dv, &sm);
  const int tid = threadIdx.x, pdk = pad(p.dk), pdv = pad(p.dv), sS = kKT + 1;
  int lo, hi;
  const int32_t* kperm = chunk_keys(p, c, c.g, &lo, &hi);
  for (int e0 = lo; e0 < hi; e0 += kKT) {
    const int nk = min(kKT, hi - e0);
    __syncthreads();  // the previous key tile's writers of the partials are done
    if (tid < kKT) sm.kpos[tid] = tid < nk ? kperm[e0 + tid] : 0;
    __syncthreads();
    for (int idx = tid; idx < kKT * p.dk; idx += kAttnThreads) {
      const int e = idx / p.dk, f = idx % p.dk;
      sm.ks[e * pdk + f] = e < nk ? p.khat[((c.r0 + sm.kpos[e]) * p.H + c.h) * p.dk + f] : 0.0f;
    }
    load_rows(sm.vs, p.v, p.ld_in, static_cast<int64_t>(c.h) * p.dv, c.r0, sm.kpos, nk, kKT, p.dv, 1.0f);
    zero_tile(sm.dva, kKT, p.dv);
    zero_tile(sm.dka, kKT, p.dk);
    for (int k = 0; k <= c.ch.kb; ++k) {
      int qs, qe;
      const int32_t* qorder = chunk_queries(p, c, (c.g + k) % c.ch.G, &qs, &qe);
      for (int q0 = qs; q0 < qe; q0 += kQT) {
        const int nq = min(kQT, qe - q0);
        __syncthreads();  // the previous query tile's readers are done (and the key tile is loaded)
        load_query_stats(p, c, qorder, q0, nq, sm.qpos, sm.lse, sm.dd);
        __syncthreads();
        load_rows(sm.qs, p.q, p.ld_in, static_cast<int64_t>(c.h) * p.dk, c.r0, sm.qpos, nq, kQT, p.dk, p.tau);
        load_rows(sm.dos, p.dout, p.ld_out, static_cast<int64_t>(c.h) * p.dv, c.r0, sm.qpos, nq, kQT, p.dv, 1.0f);
        __syncthreads();
        for (int idx = tid; idx < kQT * kKT; idx += kAttnThreads) {
          const int a = idx / kKT, e = idx % kKT;
          float pr;
          sm.ds[a * sS + e] =
              entry_grad(p, sm.qs, sm.ks, sm.dos, sm.vs, sm.qpos, sm.kpos, sm.lse, sm.dd, a, e, nq, nk, &pr);
          sm.ps[a * sS + e] = pr;
        }
        __syncthreads();
        for (int idx = tid; idx < kKT * p.dv; idx += kAttnThreads) {
          const int e = idx / p.dv, d = idx % p.dv;
          float acc = sm.dva[e * pdv + d];
          for (int a = 0; a < nq; ++a) acc = fmaf(sm.ps[a * sS + e], sm.dos[a * pdv + d], acc);
          sm.dva[e * pdv + d] = acc;
        }
        for (int idx = tid; idx < kKT * p.dk; idx += kAttnThreads) {
          const int e = idx / p.dk, f = idx % p.dk;
          float acc = sm.dka[e * pdk + f];
          for (int a = 0; a < nq; ++a) acc = fmaf(sm.ds[a * sS + e], sm.qs[a * pdk + f], acc);
          sm.dka[e * pdk + f] = acc;
        }
      }
    }
    __syncthreads();
    for (int idx = tid; idx < nk * p.dv; idx += kAttnThreads) {
      const int e = idx / p.dv, d = idx % p.dv;
      p.part_dv[part_index(p, c.r0 + sm.kpos[e], c.h, c.r) * p.dv + d] = sm.dva[e * pdv + d];
    }
    for (int idx = tid; idx < nk * p.dk; idx += kAttnThreads) {
      const int e = idx / p.dk, f = idx % p.dk;
      p.part_dkh[part_index(p, c.r0 + sm.kpos[e], c.h, c.r) * p.dk + f] = sm.dka[e * pdk + f];
    }
  }
}

// dq, dk (= 0), dv of one (row, head) from the rounds' partials.
__global__ void __launch_bounds__(kRowWarps * 32) reformer_grad_merge(Params p) {
  RowItem it;
  if (!row_item(p, it)) return;
  const int64_t rh = it.row * p.H + it.h;
  const int64_t pi0 = part_index(p, it.row, it.h, 0);
  float* dq = p.grad_q + it.row * p.ld_in + static_cast<int64_t>(it.h) * p.dk;
  float* dk = p.grad_k + it.row * p.ld_in + static_cast<int64_t>(it.h) * p.dk;
  float* dv = p.grad_v + it.row * p.ld_in + static_cast<int64_t>(it.h) * p.dv;
  for (int f = it.lane; f < p.dk; f += 32) dk[f] = 0.0f;
  const bool any = p.geom[it.b * p.H + it.h] > 0;  // without visible keys there are no partials
  const bool vis = visible(p.mask, it.row);
  const bool key = any && vis;                       // only visible keys have entries
  const float* kh = p.khat + rh * p.dk;
  auto dkhat = [&](int f) {
    float s = 0.0f;
    for (int r = 0; r < p.hashes; ++r) s += p.part_dkh[(pi0 + r) * p.dk + f];
    return s;
  };
  float dot = 0.0f;
  if (key && p.norm_keys)
    for (int f = it.lane; f < p.dk; f += 32) dot = fmaf(kh[f], dkhat(f), dot);
  dot = warp_sum(dot);
  const float inv = p.inv_norm[rh];
  for (int f = it.lane; f < p.dk; f += 32) {
    float acc = 0.0f;
    if (any)
      for (int r = 0; r < p.hashes; ++r) acc += p.part_dq[(pi0 + r) * p.dk + f];
    if (key) acc += reformer::key_grad(dkhat(f), kh[f], dot, inv, p.norm_keys);
    dq[f] = acc;
  }
  const bool self = p.lse[rh] == INFINITY && reformer::alone(p.self_mask, vis);
  const float* dy = p.dout + it.row * p.ld_out + static_cast<int64_t>(it.h) * p.dv;
  for (int d = it.lane; d < p.dv; d += 32) {
    float acc = 0.0f;
    if (key)
      for (int r = 0; r < p.hashes; ++r) acc += p.part_dv[(pi0 + r) * p.dv + d];
    if (self) acc += dy[d];
    dv[d] = acc;
  }
}

// ---------------------------------------------------------------- the variant

size_t fwd_smem(int dk, int dv) {
  FwdSmem m;
  return carve_fwd(nullptr, dk, dv, &m);
}
size_t dq_smem(int dk, int dv) {
  DqSmem m;
  return carve_dq(nullptr, dk, dv, &m);
}
size_t dkv_smem(int dk, int dv) {
  DkvSmem m;
  return carve_dkv(nullptr, dk, dv, &m);
}

class ReformerGpu final : public Attention<float> {
 public:
  ReformerGpu(const AttnConfig& c, const Context& ctx);
  ~ReformerGpu() override;
  ReformerGpu(const ReformerGpu&) = delete;
  ReformerGpu& operator=(const ReformerGpu&) = delete;

  // LSE per (row, head), then the bucket ids per (row, head, round): the CPU's layout.
  size_t saved_bytes(int, int64_t rows) const override {
    return lse_bytes(rows) + sizeof(int32_t) * static_cast<size_t>(rows) * c_.heads * s_.hashes;
  }
  size_t scratch_bytes(int B, int64_t rows) const override {
    size_t f = 0, b = 0;
    carve(nullptr, B, rows, true, &f);
    carve(nullptr, B, rows, false, &b);
    return std::max(f, b);
  }
  void forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch,
               const AttnStep& step) override;
  void backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g, const void* saved,
                void* scratch, const AttnStep& step) override;

 private:
  struct Work {
    double* rot = nullptr;  // forward only
    int32_t *geom = nullptr, *kperm = nullptr, *qorder = nullptr, *qchunk = nullptr, *qstart = nullptr;
    float *khat = nullptr, *inv_norm = nullptr;
    float *part_o = nullptr, *part_lse = nullptr;                     // forward
    float *dsum = nullptr, *part_dq = nullptr, *part_dkh = nullptr, *part_dv = nullptr;  // backward
  };
  // The scratch layout of the forward (or the backward) from `base` (nullptr: only its size, in *bytes).
  Work carve(void* base, int B, int64_t rows, bool forward_pass, size_t* bytes) const;
  size_t lse_bytes(int64_t rows) const {
    return align_up(sizeof(float) * static_cast<size_t>(rows) * c_.heads, Arena::kAlign);
  }
  size_t rotation_count() const { return static_cast<size_t>(s_.hashes) * c_.dk * (s_.buckets / 2); }
  // Checks the batch; its longest example and the most chunks (G) of any example, from the host arrays.
  void extent(const SeqBatch& seq, int* longest, int* chunks) const;
  Params params(const SeqBatch& seq, const AttnIO<float>& io, void* saved, const Work& w) const;
  // The host slot holding the rotations of (seed, step), drawn into the least recently used slot if needed.
  const double* rotations(const AttnStep& step);

  AttnConfig c_;
  Context ctx_;
  reformer::ReformerOptions s_;
  float tau_;

  struct Slot {
    double* host = nullptr;  // pinned
    cudaEvent_t copied = nullptr;
    bool drawn = false;
    uint64_t seed = 0;
    int64_t step = 0;
    uint64_t used = 0;
  };
  std::array<Slot, 3> slots_;
  uint64_t clock_ = 0;
  Slot* current_ = nullptr;  // the slot the last rotations() returned
};

ReformerGpu::ReformerGpu(const AttnConfig& c, const Context& ctx)
    : c_(c),
      ctx_(ctx),
      s_(reformer::ReformerOptions::parse(c)),
      tau_(s_.code_logit_scale ? std::sqrt(static_cast<float>(c.dk)) : 1.0f / std::sqrt(static_cast<float>(c.dk))) {
  LRA_CHECK(s_.buckets <= kMaxBuckets,
            "reformer on the GPU supports at most {} buckets (the sort keeps its histograms in shared memory), got "
            "{}; use fewer buckets or --device cpu",
            kMaxBuckets, s_.buckets);
  LRA_CHECK(c.heads >= 1 && c.heads <= 65535, "reformer on the GPU takes 1 .. 65535 heads (a grid dimension), got {}",
            c.heads);
  LRA_CHECK(c.dk >= 1 && c.dv >= 1, "reformer: head sizes must be positive (dk = {}, dv = {})", c.dk, c.dv);
  const size_t need = std::max({fwd_smem(c.dk, c.dv), dq_smem(c.dk, c.dv), dkv_smem(c.dk, c.dv)});
  LRA_CHECK(ctx.smem_per_block_optin == 0 || need <= ctx.smem_per_block_optin,
            "reformer on the GPU with head sizes dk = {}, dv = {} needs {} bytes of shared memory per block; this GPU "
            "allows {}. Use smaller heads (more of them) or --device cpu",
            c.dk, c.dv, need, ctx.smem_per_block_optin);
  CUDA_CHECK(cudaFuncSetAttribute(reformer_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(fwd_smem(c.dk, c.dv))));
  CUDA_CHECK(cudaFuncSetAttribute(reformer_dq, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(dq_smem(c.dk, c.dv))));
  CUDA_CHECK(cudaFuncSetAttribute(reformer_dkv, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(dkv_smem(c.dk, c.dv))));
  for (Slot& s : slots_) {
    CUDA_CHECK(cudaMallocHost(&s.host, sizeof(double) * rotation_count()));
    CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
  }
}

ReformerGpu::~ReformerGpu() {
  for (Slot& s : slots_) {
    if (s.copied != nullptr) {
      cudaEventSynchronize(s.copied);  // a pending copy may still read the slot
      cudaEventDestroy(s.copied);
    }
    cudaFreeHost(s.host);
  }
}

ReformerGpu::Work ReformerGpu::carve(void* base, int B, int64_t rows, bool forward_pass, size_t* bytes) const {
  ScratchCarver sc(base);
  const size_t rh = static_cast<size_t>(rows) * c_.heads, nh = static_cast<size_t>(s_.hashes);
  const size_t dk = static_cast<size_t>(c_.dk), dv = static_cast<size_t>(c_.dv);
  Work w;
  sc.take(w.geom, static_cast<size_t>(B) * c_.heads);
  sc.take(w.kperm, rh * nh);
  sc.take(w.qorder, rh * nh);
  sc.take(w.qchunk, rh * nh);
  sc.take(w.qstart, (static_cast<size_t>(rows) + static_cast<size_t>(B)) * c_.heads * nh);
  sc.take(w.khat, rh * dk);
  sc.take(w.inv_norm, rh);
  if (forward_pass) {
    sc.take(w.rot, rotation_count());
    sc.take(w.part_o, rh * nh * dv);
    sc.take(w.part_lse, rh * nh);
  } else {
    sc.take(w.dsum, rh);
    sc.take(w.part_dq, rh * nh * dk);
    sc.take(w.part_dkh, rh * nh * dk);
    sc.take(w.part_dv, rh * nh * dv);
  }
  *bytes = sc.used();
  return w;
}

void ReformerGpu::extent(const SeqBatch& seq, int* longest, int* chunks) const {
  check_device_batch(seq, c_.max_len, "reformer attention");
  LRA_CHECK(seq.B <= 65535, "reformer attention on the GPU takes at most 65535 examples per call (got {})", seq.B);
  *longest = 0;
  *chunks = 0;
  for (int b = 0; b < seq.B; ++b) {
    const int n = seq.length(b);
    int m = n;
    if (seq.key_mask != nullptr) {
      m = 0;
      for (int64_t r = seq.offsets[b]; r < seq.offsets[b + 1]; ++r) m += seq.key_mask[r] != 0 ? 1 : 0;
    }
    *longest = std::max(*longest, n);
    *chunks = std::max(*chunks, reformer::make_chunks(m, s_.chunk, s_.buckets, s_.hashes, s_.before).G);
  }
}

Params ReformerGpu::params(const SeqBatch& seq, const AttnIO<float>& io, void* saved, const Work& w) const {
  Params p{};
  p.q = io.q;
  p.v = io.v;
  p.ld_in = io.ld_in;
  p.out = io.out;
  p.ld_out = io.ld_out;
  p.lse = static_cast<float*>(saved);
  p.bucket = reinterpret_cast<int32_t*>(static_cast<char*>(saved) + lse_bytes(seq.rows()));
  p.rot = w.rot;
  p.offsets = seq.dev_offsets;
  p.mask = seq.key_mask != nullptr ? seq.dev_key_mask : nullptr;
  p.H = c_.heads;
  p.dk = c_.dk;
  p.dv = c_.dv;
  p.hashes = s_.hashes;
  p.buckets = s_.buckets;
  p.chunk = s_.chunk;
  p.before = s_.before;
  p.causal = s_.causal;
  p.self_mask = s_.self_mask;
  p.norm_keys = s_.norm_keys;
  p.tau = tau_;
  p.geom = w.geom;
  p.kperm = w.kperm;
  p.qorder = w.qorder;
  p.qchunk = w.qchunk;
  p.qstart = w.qstart;
  p.khat = w.khat;
  p.inv_norm = w.inv_norm;
  p.dsum = w.dsum;
  p.part_o = w.part_o;
  p.part_lse = w.part_lse;
  p.part_dq = w.part_dq;
  p.part_dkh = w.part_dkh;
  p.part_dv = w.part_dv;
  return p;
}

const double* ReformerGpu::rotations(const AttnStep& step) {
  Slot* pick = nullptr;
  for (Slot& s : slots_)
    if (s.drawn && s.seed == step.seed && s.step == step.step) pick = &s;
  if (pick == nullptr) {
    pick = &slots_[0];
    for (Slot& s : slots_)
      if (s.used < pick->used) pick = &s;
    // The last copy that read this slot was enqueued at least two draws ago; it has normally run long since.
    CUDA_CHECK(cudaEventSynchronize(pick->copied));
    reformer::draw_rotations(s_, c_.dk, c_.layer, step.seed, step.step, pick->host);
    pick->drawn = true;
    pick->seed = step.seed;
    pick->step = step.step;
  }
  pick->used = ++clock_;
  current_ = pick;
  return pick->host;
}

void ReformerGpu::forward(const SeqBatch& seq, const AttnIO<float>& io, void* saved, void* scratch,
                          const AttnStep& step) {
  int longest = 0, chunks = 0;
  extent(seq, &longest, &chunks);
  if (longest == 0) return;
  size_t bytes = 0;
  const Work w = carve(scratch, seq.B, seq.rows(), true, &bytes);
  const double* rot = rotations(step);
  CUDA_CHECK(cudaMemcpyAsync(w.rot, rot, sizeof(double) * rotation_count(), cudaMemcpyHostToDevice, ctx_.stream));
  CUDA_CHECK(cudaEventRecord(current_->copied, ctx_.stream));
  const Params p = params(seq, io, saved, w);
  const dim3 rows_grid(static_cast<unsigned>((longest + kRowWarps - 1) / kRowWarps), static_cast<unsigned>(c_.heads),
                       static_cast<unsigned>(seq.B));
  reformer_hash<<<rows_grid, kRowWarps * 32, 0, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
  reformer_keys<<<rows_grid, kRowWarps * 32, 0, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
  const dim3 sort_grid(static_cast<unsigned>(s_.hashes), static_cast<unsigned>(c_.heads),
                       static_cast<unsigned>(seq.B));
  reformer_sort<<<sort_grid, kSortThreads, sizeof(int32_t) * 2 * s_.buckets, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
  if (chunks > 0) {
    const dim3 chunk_grid(static_cast<unsigned>(chunks), static_cast<unsigned>(c_.heads),
                          static_cast<unsigned>(seq.B));
    reformer_fwd<<<chunk_grid, kAttnThreads, fwd_smem(c_.dk, c_.dv), ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
  }
  reformer_merge<<<rows_grid, kRowWarps * 32, 0, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

void ReformerGpu::backward(const SeqBatch& seq, const AttnIO<float>& io, const AttnGrads<float>& g,
                           const void* saved, void* scratch, const AttnStep&) {
  int longest = 0, chunks = 0;
  extent(seq, &longest, &chunks);
  if (longest == 0) return;
  size_t bytes = 0;
  const Work w = carve(scratch, seq.B, seq.rows(), false, &bytes);
  Params p = params(seq, io, const_cast<void*>(saved), w);
  p.dout = g.dout;
  p.grad_q = g.dq;
  p.grad_k = g.dk;
  p.grad_v = g.dv;
  const dim3 rows_grid(static_cast<unsigned>((longest + kRowWarps - 1) / kRowWarps), static_cast<unsigned>(c_.heads),
                       static_cast<unsigned>(seq.B));
  reformer_keys<<<rows_grid, kRowWarps * 32, 0, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
  const dim3 sort_grid(static_cast<unsigned>(s_.hashes), static_cast<unsigned>(c_.heads),
                       static_cast<unsigned>(seq.B));
  reformer_sort<<<sort_grid, kSortThreads, sizeof(int32_t) * 2 * s_.buckets, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
  reformer_row_dot<<<rows_grid, kRowWarps * 32, 0, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
  if (chunks > 0) {
    const dim3 chunk_grid(static_cast<unsigned>(chunks), static_cast<unsigned>(c_.heads),
                          static_cast<unsigned>(seq.B));
    reformer_dq<<<chunk_grid, kAttnThreads, dq_smem(c_.dk, c_.dv), ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    reformer_dkv<<<chunk_grid, kAttnThreads, dkv_smem(c_.dk, c_.dv), ctx_.stream>>>(p);
    CUDA_CHECK_LAUNCH();
  }
  reformer_grad_merge<<<rows_grid, kRowWarps * 32, 0, ctx_.stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

std::unique_ptr<Attention<float>> make_reformer(const AttnConfig& cfg, const Context& ctx) {
  return std::make_unique<ReformerGpu>(cfg, ctx);
}

[[maybe_unused]] const bool registered = register_attention("reformer", make_reformer);

}  // namespace

}  // namespace lra::cuda
