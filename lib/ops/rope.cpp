// Rotary position embedding (RoPE, Su et al. 2021) on the query or key columns of the packed qkv rows.
// Each head's dh columns form dh/2 pairs (c, c + dh/2) (the "rotate half" layout); the pair i of the row
// at position p of its sequence is turned by the angle p * theta_i, theta_i = 10000^(-2i/dh):
//   forward:  y1 = x1 cos - x2 sin,  y2 = x1 sin + x2 cos
//   inverse:  y1 = x1 cos + x2 sin,  y2 = -x1 sin + x2 cos   (the rotation's transpose: its backward)
// The table holds cos and sin of p * theta_i for every position, computed in double.
#include <cmath>

#include "ops/instantiate.h"
#include "ops/ops.h"
#include "ops/parallel.h"

namespace lra {

template <class T>
void rope_table(T* cos_table, T* sin_table, int positions, int head_dim) {
  const int half = head_dim / 2;
  for (int p = 0; p < positions; ++p)
    for (int i = 0; i < half; ++i) {
      const double angle = p * std::pow(10000.0, -2.0 * i / head_dim);
      cos_table[static_cast<int64_t>(p) * half + i] = static_cast<T>(std::cos(angle));
      sin_table[static_cast<int64_t>(p) * half + i] = static_cast<T>(std::sin(angle));
    }
}

template <class T>
void rope_rotate(T* x, int64_t ld, const int32_t* row_offsets, int S, int heads, int head_dim, const T* cos_table,
                 const T* sin_table, bool inverse) {
  const int half = head_dim / 2;
  const T sign = inverse ? T(-1) : T(1);
  for (int s = 0; s < S; ++s) {
    const int64_t r0 = row_offsets[s];
    parallel_for(row_offsets[s + 1] - r0, static_cast<int64_t>(heads) * head_dim, [&](int64_t p) {
      T* row = x + (r0 + p) * ld;
      const T* c = cos_table + p * half;
      const T* sn = sin_table + p * half;
      for (int h = 0; h < heads; ++h) {
        T* v = row + static_cast<int64_t>(h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const T x1 = v[i], x2 = v[i + half], si = sign * sn[i];
          v[i] = x1 * c[i] - x2 * si;
          v[i + half] = x1 * si + x2 * c[i];
        }
      }
    });
  }
}

#define INST(T)                                                                                            \
  template void rope_table<T>(T*, T*, int, int);                                                           \
  template void rope_rotate<T>(T*, int64_t, const int32_t*, int, int, int, const T*, const T*, bool);
LRA_INSTANTIATE(INST)

}  // namespace lra
