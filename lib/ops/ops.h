// CPU ops: forward and backward side by side, one op per file, templated on the scalar type so the
// gradient tests run in double. Shapes are given in the comments as (rows, columns), row-major.
//
// Gradient convention (one rule, used everywhere):
//   * parameter gradients ACCUMULATE (+=), so the trainer zeroes them once per step;
//   * activation gradients OVERWRITE (=), except on the residual stream, where they accumulate (+=):
//     layernorm_backward adds into dx, because every LayerNorm input here is the residual stream.
//
// Sequences are packed: the rows of example b are row_offsets[b] .. row_offsets[b+1]-1 (no padding
// rows exist), and key_mask (per row, 1 = a real token, nullptr = all real) marks positions that
// pooling and attention ignore.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/math.h"

namespace lra {

enum class Pool { Cls, Mean, Max };

// linear.cpp. y = x W^T + b.  x: (N, in), W: (out, in), b: (out) or nullptr, y: (N, out)
template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t N, int in, int out);
// dx = dy W (overwrite; skipped when dx is nullptr), dW += dy^T x, db += colsum(dy).
template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t N, int in, int out);

// layernorm.cpp. y = (x - mean) * rstd * g + b per row.  x, y: (N, C); mean, rstd: (N)
template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* g, const T* b, int64_t N, int C, T eps);
// dx += rstd (dy*g - mean(dy*g) - xhat mean(dy*g*xhat)); dg += sum dy*xhat; db += sum dy.
template <class T>
void layernorm_backward(T* dx, T* dg, T* db, const T* dy, const T* x, const T* mean, const T* rstd,
                        const T* g, int64_t N, int C);

// activation.cpp. y = gelu(x) / relu(x) element-wise; the backward overwrites dx = dy * f'(x).
template <class T>
void gelu_forward(T* y, const T* x, int64_t n, GeluKind kind);
template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, int64_t n, GeluKind kind);
template <class T>
void relu_forward(T* y, const T* x, int64_t n);
template <class T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n);

// dropout.cpp. Inverted dropout with a counter-based mask: element i is kept when
// u32_to_unit(philox_word(seed, stream, first + i)) >= p, and scaled by 1/(1-p). `first` is the stream's
// element of x[0] (non-zero for rows that sit further down a larger batch, RowMap). The backward
// regenerates the mask. y and x may alias.
template <class T>
void dropout_forward(T* y, const T* x, int64_t n, float p, uint64_t seed, uint64_t stream, uint64_t first);
template <class T>
void dropout_backward(T* dx, const T* dy, int64_t n, float p, uint64_t seed, uint64_t stream, uint64_t first);
// out = res + dropout(h). The backward of the residual branch is the identity; use dropout_backward
// for the h branch.
template <class T>
void residual_dropout_forward(T* out, const T* res, const T* h, int64_t n, float p, uint64_t seed,
                              uint64_t stream, uint64_t first);

// embedding.cpp. Row r = row_offsets[b] + p of example b gets
//   x[r] = (cls != nullptr && p == 0) ? cls + pos[0] : wte[tokens[tok_offsets[b] + p - has_cls]] + pos[p]
// tokens: packed token ids, wte: (V, D), pos: (P, D) position table (learned or sinusoidal), x: (rows, D)
template <class T>
void embedding_forward(T* x, const int32_t* tokens, const int32_t* tok_offsets, const int32_t* row_offsets,
                       int B, const T* wte, const T* pos, const T* cls, int D);
// dwte[tok] += dx[r], dpos[p] += dx[r] (dpos nullptr for a fixed table), dcls += dx[first rows].
// Deterministic: each thread owns a slice of the D columns and walks the rows in order.
template <class T>
void embedding_backward(T* dwte, T* dpos, T* dcls, const T* dx, const int32_t* tokens,
                        const int32_t* tok_offsets, const int32_t* row_offsets, int B, int D);

// Fills table (P, D) with LRA's sinusoidal position encoding: the first D/2 columns sin(p w_i), the
// next D/2 cos(p w_i), w_i = 10000^(-2i/D) (Flax/LRA layout, halves not interleaved).
template <class T>
void sinusoidal_table(T* table, int P, int D);

// pool.cpp. out: (B, D). Cls: out[b] = x[row_offsets[b]]. Mean: the mean of the example's rows whose
// key_mask is 1. Max: per column, the largest value over those rows (the backward sends the gradient to
// the first row holding it). An example with no such row pools to 0. The backward writes every row of
// dx (overwrite); x is the forward's input (read by Max only).
template <class T>
void pool_forward(T* out, const T* x, const int32_t* row_offsets, const uint8_t* key_mask, int B, int D,
                  Pool kind);
template <class T>
void pool_backward(T* dx, const T* dout, const T* x, const int32_t* row_offsets, const uint8_t* key_mask, int B,
                   int D, Pool kind);

// rope.cpp. Rotary position embedding. rope_table fills cos and sin (positions, head_dim / 2) with the
// angles p * 10000^(-2i/head_dim). rope_rotate turns, in place, the `heads` blocks of head_dim columns of
// each row of x (row stride ld) by its position within its sequence (row_offsets: S + 1), pairing
// column i with i + head_dim/2; inverse = true applies the transposed rotation (the backward).
template <class T>
void rope_table(T* cos_table, T* sin_table, int positions, int head_dim);
template <class T>
void rope_rotate(T* x, int64_t ld, const int32_t* row_offsets, int S, int heads, int head_dim, const T* cos_table,
                 const T* sin_table, bool inverse);

// pair.cpp. The dual encoder's head input. pooled: (2B, D), rows 0..B-1 the first documents (u), rows
// B..2B-1 the second (v); out: (B, pair_blocks(kind) * D), row b = [u_b, v_b, u_b*v_b, u_b-v_b] (Nli)
// or [u_b, v_b] (Concat). The backward overwrites dpooled (2B, D) (see pair_feature_grads).
template <class T>
void pair_features_forward(T* out, const T* pooled, int B, int D, Interaction kind);
template <class T>
void pair_features_backward(T* dpooled, const T* dout, const T* pooled, int B, int D, Interaction kind);

// cross_entropy.cpp. Softmax cross-entropy averaged over the B rows of logits (B, C).
// Saves probs (B, C); returns the mean loss; losses (B) may be nullptr. Labels must be in [0, C)
// (Model::load_batch checks them).
template <class T>
double cross_entropy_forward(T* probs, T* losses, const T* logits, const int32_t* labels, int B, int C);
// dlogits = (probs - onehot(labels)) / B  (overwrite)
template <class T>
void cross_entropy_backward(T* dlogits, const T* probs, const int32_t* labels, int B, int C);

// adamw.cpp. One AdamW step over n elements; t is the 1-based step count.
struct AdamW {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const AdamW& hp, int64_t t);
// Sum of squares in double, in fixed-size chunks summed in order: the same bits for any thread count.
template <class T>
double sum_squares(const T* x, int64_t n);
template <class T>
void scale_inplace(T* x, int64_t n, T s);

}  // namespace lra
