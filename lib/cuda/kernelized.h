// Internal to the kernelised attention variants on the GPU (kernelized.cu): the engine's chunk products
// (kernelized_engine.cu) and the feature maps (kernelized_features.cu), as host launchers enqueued on the
// Context's stream. The maths is lib/attn/kernelized.h's; every per-(row, head) array is laid out
// [row][head][column], rows packed as in SeqBatch, and a batch is cut into tiles of kTile rows per
// example (tile t of example b is rows t kTile .. of b): the causal chunks, and the unit of every grid.
#pragma once

#include <cstdint>

#include "attn/kernelized.h"
#include "cuda/context.h"

namespace lra::cuda::kernelized {

constexpr int kTile = KernelizedAttention<float>::kChunk;  // 64 rows: tile, causal chunk, column tile
constexpr int kThreads = 256;                              // threads of every engine and feature block
constexpr int kWarps = kThreads / 32;

// The batch on the device: example b owns packed rows offsets[b] .. offsets[b+1]-1 (device memory);
// tiles = the most tiles an example may have (ceil(max_len / kTile)); rows = offsets[B] (host value).
struct Layout {
  const int32_t* offsets = nullptr;
  int B = 0;
  int heads = 0;
  int tiles = 0;
  int64_t rows = 0;
};

// A per-head row matrix: element (row r, head h, column k < width) is p[r ld + h hs + k] for k < real
// and 1 for real <= k < width, so [V | 1] is V with width dv + 1 and real dv.
struct RowMat {
  const float* p = nullptr;
  int64_t ld = 0;
  int64_t hs = 0;
  int width = 0;
  int real = 0;
};

// Per chunk (b, c) and head h, the state X_c^T Y_c (x.width x y.width, row-major) at
// states + ((b tiles + c) heads + h) x.width y.width.
void chunk_states(const RowMat& x, const RowMat& y, float* states, const Layout& lay, const Context& ctx);

// Over the chunks of each example: Total leaves the sum of all chunk states in chunk 0 (bidirectional);
// Forward makes each state the sum of the chunks before it, Reverse of the chunks after it (causal).
enum class Scan { Total, Forward, Reverse };
void scan_states(float* states, int64_t state_elems, Scan scan, const Layout& lay, const Context& ctx);

// Per tile (b, t) and head h, for rows i of the tile and columns j < out_width:
//   out[i][j] = sum_k Y[i][k] M(k, j)  +  (causal only) sum_{i'} [i' <= i (lower) or i' >= i] (Y[i] . Z[i']) W[i'][j]
// with i' over the tile's rows, M(k, j) = St[k][j] or, transposed, St[j][k], and St the state
// (m x e) of chunk (b, t) when causal, of chunk (b, 0) otherwise. k runs over y.width (= z.width).
// Rows whose zero_rows entry is 0 are written as zeros (nullptr: none).
struct RowsArgs {
  RowMat y, z, w;
  const float* states = nullptr;
  int m = 0, e = 0;
  bool transposed = false;
  bool causal = false;
  bool lower = true;
  float* out = nullptr;
  int64_t out_ld = 0;
  int64_t out_hs = 0;
  int out_width = 0;
  const uint8_t* zero_rows = nullptr;
};
void chunk_rows(const RowsArgs& a, const Layout& lay, const Context& ctx);

// nd: rows x heads x (dv + 1), [N | D]. O = N r with r = 1/(D + eps) (Guard::Add) or 1/max(D, eps)
// (Guard::Clamp) into out (row stride ld_out, head h at h dv); den[r heads + h] = D.
void normalise(float* out, int64_t ld_out, float* den, const float* nd, int dv, float eps, Guard guard,
               const Layout& lay, const Context& ctx);
// g: rows x heads x (dv + 1), [dN | dD] = [r dO | -r (dO . O)], dD = 0 where the clamp is active.
void normaliser_grad(float* g, const float* dout, const float* out, int64_t ld_out, const float* den, int dv,
                     float eps, Guard guard, const Layout& lay, const Context& ctx);

// The feature maps of linear (Elu), cosformer (Cos), performer-relu without (Relu) and with (ReluProj)
// a projection, and performer (Favor). Constants are computed on the host as the CPU maps do.
enum class MapKind { Elu, Cos, Relu, ReluProj, Favor };

struct FeatureParams {
  MapKind kind = MapKind::Elu;
  int dk = 0;
  int m = 0;                  // features
  float kernel_eps = 0.0f;    // Relu, ReluProj
  float feature_eps = 0.0f;   // Favor
  float scale = 1.0f;         // dk^-1/4 (ReluProj, Favor)
  float isq = 1.0f;           // m^-1/2 (Favor)
  float sq = 1.0f;            // m^1/2 (Favor)
  bool causal = false;        // Favor's key stabiliser: the first real key only
  const float* w = nullptr;   // W (m x dk, row-major), device
  const float* wt = nullptr;  // W^T (dk x m, row-major), device
};

// What Favor keeps between its kernels (all device memory, recomputed by every pass):
// per (row, head): qarg (the query's argmax feature), rowmax / rowarg (a key's largest u and where),
// rowhalf (|xh|^2 / 2), dh (-rowsum dU of a key); per (example, head): kstab (s), karg (the key
// argmax as row * m + feature within the example, -1 when there is no real key), ds.
struct FeatureAux {
  int32_t* qarg = nullptr;
  float* rowmax = nullptr;
  int32_t* rowarg = nullptr;
  float* rowhalf = nullptr;
  float* dh = nullptr;
  float* kstab = nullptr;
  int32_t* karg = nullptr;
  float* ds = nullptr;
};

// phi (rows x heads x m) of the query rows (key = false) or the key rows, x at x + r ld + h dk; rows of
// masked keys (mask[r] == 0) are zero. L_pad is cosFormer's M.
void feature_map(const FeatureParams& fp, const float* x, int64_t ld, bool key, const uint8_t* mask, int L_pad,
                 float* phi, const FeatureAux& aux, const Layout& lay, const Context& ctx);
// dx (row stride ld_dx, head h at h dk, overwritten) from dphi (zero on masked keys; overwritten) and the
// phi and aux that feature_map produced for the same rows.
void feature_map_backward(const FeatureParams& fp, const float* x, int64_t ld, bool key, int L_pad,
                          const float* phi, float* dphi, float* dx, int64_t ld_dx, const FeatureAux& aux,
                          const Layout& lay, const Context& ctx);

}  // namespace lra::cuda::kernelized
