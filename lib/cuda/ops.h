// The ops of lib/ops/ops.h on the GPU: the same names, arguments, shapes and gradient convention
// (parameter gradients accumulate, activation gradients overwrite, layernorm_backward adds into dx),
// float only, plus the Context whose stream they are enqueued on. All pointers are device memory.
// Element-wise maths comes from lib/ops/math.h and lib/core/rng.h (LRA_HD functions), so the CPU test
// suite checks the same expressions; a dropout mask is the same on both devices.
// Ops whose CPU version returns a value write it to device memory instead (the backend reads it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/context.h"
#include "ops/ops.h"

namespace lra::cuda {

void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t N, int in, int out,
                    const Context& ctx);
void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const float* W, int64_t N,
                     int in, int out, const Context& ctx);

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* g, const float* b,
                       int64_t N, int C, float eps, const Context& ctx);
void layernorm_backward(float* dx, float* dg, float* db, const float* dy, const float* x, const float* mean,
                        const float* rstd, const float* g, int64_t N, int C, const Context& ctx);

void gelu_forward(float* y, const float* x, int64_t n, GeluKind kind, const Context& ctx);
void gelu_backward(float* dx, const float* dy, const float* x, int64_t n, GeluKind kind, const Context& ctx);
void relu_forward(float* y, const float* x, int64_t n, const Context& ctx);
void relu_backward(float* dx, const float* dy, const float* y, int64_t n, const Context& ctx);

// `first`: the Philox element of x[0], as on the CPU (lib/ops/ops.h).
void dropout_forward(float* y, const float* x, int64_t n, float p, uint64_t seed, uint64_t stream, uint64_t first,
                     const Context& ctx);
void dropout_backward(float* dx, const float* dy, int64_t n, float p, uint64_t seed, uint64_t stream,
                      uint64_t first, const Context& ctx);
void residual_dropout_forward(float* out, const float* res, const float* h, int64_t n, float p, uint64_t seed,
                              uint64_t stream, uint64_t first, const Context& ctx);

void embedding_forward(float* x, const int32_t* tokens, const int32_t* tok_offsets, const int32_t* row_offsets,
                       int B, const float* wte, const float* pos, const float* cls, int D, const Context& ctx);
// Deterministic (the same bits every run): `work` holds embedding_backward_workspace(rows) bytes,
// rows = the batch's packed row count (row_offsets[B], which the caller knows on the host).
size_t embedding_backward_workspace(int64_t rows);
void embedding_backward(float* dwte, float* dpos, float* dcls, const float* dx, const int32_t* tokens,
                        const int32_t* tok_offsets, const int32_t* row_offsets, int B, int D, int64_t rows,
                        void* work, const Context& ctx);

void pool_forward(float* out, const float* x, const int32_t* row_offsets, const uint8_t* key_mask, int B, int D,
                  Pool kind, const Context& ctx);
// Writes every row of dx; `rows` = row_offsets[B]; x: the forward's input (read by Max only).
void pool_backward(float* dx, const float* dout, const float* x, const int32_t* row_offsets, const uint8_t* key_mask,
                   int B, int D, int64_t rows, Pool kind, const Context& ctx);

// ops/ops.h rope_rotate; rows = row_offsets[S].
void rope_rotate(float* x, int64_t ld, const int32_t* row_offsets, int S, int64_t rows, int heads, int head_dim,
                 const float* cos_table, const float* sin_table, bool inverse, const Context& ctx);

void pair_features_forward(float* out, const float* pooled, int B, int D, Interaction kind, const Context& ctx);
void pair_features_backward(float* dpooled, const float* dout, const float* pooled, int B, int D, Interaction kind,
                            const Context& ctx);

// Writes the mean loss, in double, to *loss.
void cross_entropy_forward(float* probs, float* losses, const float* logits, const int32_t* labels, int B, int C,
                           double* loss, const Context& ctx);
void cross_entropy_backward(float* dlogits, const float* probs, const int32_t* labels, int B, int C,
                            const Context& ctx);

// AdamW with the bias corrections computed on the host, as the CPU op does.
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamW& hp, int64_t t,
                  const Context& ctx);
// Sum of squares in double into *out, deterministic: kReduceBlocks fixed partial sums (in `partials`)
// added in order by one block.
constexpr int kReduceBlocks = 512;
void sum_squares(const float* x, int64_t n, double* out, double* partials, const Context& ctx);
void scale_inplace(float* x, int64_t n, float s, const Context& ctx);

}  // namespace lra::cuda
