// Finite-difference gradient tests for every op, in double. Each test differentiates
// l = sum(y * R) for a fixed random R (so dy = R) and compares the hand-written backward with
// central differences. Tolerance 1e-6 relative (the methodology's double-precision bound; observed
// errors are around 1e-9).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <omp.h>

#include "core/rng.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace lra;
using namespace lra::test;

namespace {
constexpr double kTol = 1e-6;
}

TEST_CASE("linear backward matches finite differences", "[ops][grad]") {
  const int N = 7, in = 5, out = 4;
  auto x = randn(N * in, 1), W = randn(out * in, 2), b = randn(out, 3), R = randn(N * out, 4);
  std::vector<double> y(N * out);
  auto loss = [&] {
    linear_forward(y.data(), x.data(), W.data(), b.data(), N, in, out);
    return dot(y, R);
  };
  std::vector<double> dx(N * in), dW(out * in, 0.0), db(out, 0.0);
  linear_backward(dx.data(), dW.data(), db.data(), R.data(), x.data(), W.data(), N, in, out);
  CHECK(fd_rel_error(x, dx, loss) < kTol);
  CHECK(fd_rel_error(W, dW, loss) < kTol);
  CHECK(fd_rel_error(b, db, loss) < kTol);

  SECTION("parameter gradients accumulate, dx overwrites") {
    std::vector<double> dx2(N * in, 123.0), dW2 = dW, db2 = db;
    linear_backward(dx2.data(), dW2.data(), db2.data(), R.data(), x.data(), W.data(), N, in, out);
    CHECK(max_abs_diff(dx2, dx) < 1e-12);
    for (size_t i = 0; i < dW.size(); ++i) CHECK(dW2[i] == Approx(2 * dW[i]));
    for (size_t i = 0; i < db.size(); ++i) CHECK(db2[i] == Approx(2 * db[i]));
  }
}

TEST_CASE("layernorm backward matches finite differences", "[ops][grad]") {
  const int N = 6, C = 9;
  auto x = randn(N * C, 5, 2.0), g = randn(C, 6), b = randn(C, 7), R = randn(N * C, 8);
  std::vector<double> y(N * C), mean(N), rstd(N);
  auto loss = [&] {
    layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), N, C, 1e-6);
    return dot(y, R);
  };
  loss();
  std::vector<double> dx(N * C, 0.0), dg(C, 0.0), db(C, 0.0);
  layernorm_backward(dx.data(), dg.data(), db.data(), R.data(), x.data(), mean.data(), rstd.data(), g.data(), N, C);
  CHECK(fd_rel_error(x, dx, loss) < kTol);
  CHECK(fd_rel_error(g, dg, loss) < kTol);
  CHECK(fd_rel_error(b, db, loss) < kTol);
  SECTION("dx accumulates (the residual stream)") {
    std::vector<double> dx2(N * C, 1.0), dg2(C, 0.0), db2(C, 0.0);
    layernorm_backward(dx2.data(), dg2.data(), db2.data(), R.data(), x.data(), mean.data(), rstd.data(), g.data(),
                       N, C);
    for (size_t i = 0; i < dx.size(); ++i) CHECK(dx2[i] == Approx(dx[i] + 1.0));
  }
}

TEST_CASE("gelu and relu backward match finite differences", "[ops][grad]") {
  const int n = 50;
  auto x = randn(n, 9, 2.0), R = randn(n, 10);
  for (auto& v : x)
    if (std::fabs(v) < 1e-3) v = 0.5;  // keep ReLU away from its kink
  std::vector<double> y(n), dx(n);
  for (GeluKind kind : {GeluKind::Tanh, GeluKind::Exact}) {
    auto loss = [&] {
      gelu_forward(y.data(), x.data(), n, kind);
      return dot(y, R);
    };
    gelu_backward(dx.data(), R.data(), x.data(), n, kind);
    CHECK(fd_rel_error(x, dx, loss) < kTol);
  }
  auto loss = [&] {
    relu_forward(y.data(), x.data(), n);
    return dot(y, R);
  };
  loss();
  relu_backward(dx.data(), R.data(), y.data(), n);
  CHECK(fd_rel_error(x, dx, loss) < kTol);
}

TEST_CASE("the vectorised gelu op equals the shared scalar maths", "[ops]") {
  // ops/math.h is what the GPU kernels evaluate; the CPU op must agree to float rounding (the derivative
  // loses a few 1e-6 where tanh saturates, |x| > 4).
  auto x = cast<float>(randn(5000, 30, 3.0));
  std::vector<float> y(x.size()), dx(x.size()), ones(x.size(), 1.0f);
  for (GeluKind kind : {GeluKind::Tanh, GeluKind::Exact}) {
    gelu_forward(y.data(), x.data(), static_cast<int64_t>(x.size()), kind);
    gelu_backward(dx.data(), ones.data(), x.data(), static_cast<int64_t>(x.size()), kind);
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double ref = kind == GeluKind::Tanh ? gelu_tanh(v) : gelu_exact(v);
      const double dref = kind == GeluKind::Tanh ? gelu_tanh_grad(v) : gelu_exact_grad(v);
      CHECK(y[i] == Approx(ref).margin(2e-6));
      CHECK(dx[i] == Approx(dref).margin(1e-5));
    }
  }
}

TEST_CASE("dropout's integer test equals uniform >= p", "[ops][rng]") {
  for (float p : {0.1f, 0.25f, 0.5f, 0.9f}) {
    std::vector<uint32_t> bits(4000);
    philox_fill(9, 3, 1001, 4000, bits.data());
    int mismatches = 0;
    for (uint64_t j = 0; j < bits.size(); ++j)
      mismatches += ((bits[j] >> 8) >= dropout_threshold(p)) != (u32_to_unit(philox_word(9, 3, 1001 + j)) >= p);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("gelu variants agree with their definitions", "[ops]") {
  // The two forms differ by at most ~4.7e-4 in value (docs/attention.md, section 8).
  double worst = 0;
  for (double x = -6; x <= 6; x += 0.01) worst = std::max(worst, std::fabs(gelu_tanh(x) - gelu_exact(x)));
  CHECK(worst < 5e-4);
  CHECK(worst > 1e-4);
  CHECK(gelu_exact(1.0) == Approx(0.8413447460685429));
}

TEST_CASE("dropout regenerates its mask and matches finite differences", "[ops][grad]") {
  const int n = 1000;
  auto x = randn(n, 11), R = randn(n, 12);
  std::vector<double> y(n), dx(n);
  const float p = 0.3f;
  auto loss = [&] {
    dropout_forward(y.data(), x.data(), n, p, 42, 7, 0);
    return dot(y, R);
  };
  loss();
  int dropped = 0;
  for (int i = 0; i < n; ++i) {
    if (y[i] == 0.0) ++dropped;
    else CHECK(y[i] == Approx(x[i] / (1 - p)));
  }
  CHECK(dropped > 240);
  CHECK(dropped < 360);
  dropout_backward(dx.data(), R.data(), n, p, 42, 7, 0);
  CHECK(fd_rel_error(x, dx, loss) < kTol);
  SECTION("another stream draws another mask; p = 0 is the identity") {
    std::vector<double> y2(n);
    dropout_forward(y2.data(), x.data(), n, p, 42, 8, 0);
    CHECK(max_abs_diff(y, y2) > 0.1);
    dropout_forward(y2.data(), x.data(), n, 0.0f, 42, 8, 0);
    CHECK(max_abs_diff(y2, x) == 0.0);
  }
  SECTION("a part keyed by its first element draws the whole's mask (a process's share of a batch)") {
    for (int cut : {1, 37, 512, 999}) {
      std::vector<double> whole(n), parts(n), res(n, 1.0), whole_res(n), part_res(n);
      dropout_forward(whole.data(), x.data(), n, p, 42, 7, 0);
      dropout_forward(parts.data(), x.data(), cut, p, 42, 7, 0);
      dropout_forward(parts.data() + cut, x.data() + cut, n - cut, p, 42, 7, static_cast<uint64_t>(cut));
      CHECK(parts == whole);
      residual_dropout_forward(whole_res.data(), res.data(), x.data(), n, p, 42, 7, 0);
      residual_dropout_forward(part_res.data() + cut, res.data() + cut, x.data() + cut, n - cut, p, 42, 7,
                               static_cast<uint64_t>(cut));
      CHECK(std::equal(part_res.begin() + cut, part_res.end(), whole_res.begin() + cut));
    }
  }
}

TEST_CASE("embedding backward matches finite differences", "[ops][grad]") {
  const int V = 6, D = 4, B = 3, P = 8;
  const std::vector<int32_t> tokens = {1, 2, 2, 5, 0, 3, 1, 4, 4};  // lengths 4, 1, 4 (+CLS each)
  const std::vector<int32_t> tok_off = {0, 4, 5, 9}, row_off = {0, 5, 7, 12};
  auto wte = randn(V * D, 13), pos = randn(P * D, 14), cls = randn(D, 15), R = randn(12 * D, 16);
  std::vector<double> x(12 * D);
  auto loss = [&] {
    embedding_forward(x.data(), tokens.data(), tok_off.data(), row_off.data(), B, wte.data(), pos.data(),
                      cls.data(), D);
    return dot(x, R);
  };
  loss();
  CHECK(x[0] == Approx(cls[0] + pos[0]));
  CHECK(x[D] == Approx(wte[1 * D] + pos[D]));
  std::vector<double> dwte(V * D, 0.0), dpos(P * D, 0.0), dcls(D, 0.0);
  embedding_backward(dwte.data(), dpos.data(), dcls.data(), R.data(), tokens.data(), tok_off.data(), row_off.data(),
                     B, D);
  CHECK(fd_rel_error(wte, dwte, loss) < kTol);
  CHECK(fd_rel_error(pos, dpos, loss) < kTol);
  CHECK(fd_rel_error(cls, dcls, loss) < kTol);
}

TEST_CASE("sinusoidal table follows LRA's layout", "[ops]") {
  const int P = 5, D = 8;
  std::vector<double> t(P * D);
  sinusoidal_table(t.data(), P, D);
  CHECK(t[0 * D + 0] == Approx(0.0));
  CHECK(t[0 * D + 4] == Approx(1.0));
  CHECK(t[3 * D + 1] == Approx(std::sin(3 * std::pow(10000.0, -2.0 / 8))));
  CHECK(t[3 * D + 5] == Approx(std::cos(3 * std::pow(10000.0, -2.0 / 8))));
}

TEST_CASE("rotary embeddings: the rotation at each sequence's positions, its inverse and its gradient",
          "[ops][grad][rope]") {
  const int heads = 2, dh = 6, half = 3, P = 5;
  const int64_t ld = 2 * heads * dh + 1;  // q's columns of a wider row, as in the qkv block
  const std::vector<int32_t> off = {0, 4, 4, 7};  // sequences of 4, 0 and 3 rows
  std::vector<double> cos_t(P * half), sin_t(P * half);
  rope_table(cos_t.data(), sin_t.data(), P, dh);
  CHECK(cos_t[0] == 1.0);
  CHECK(sin_t[0] == 0.0);
  CHECK(sin_t[3 * half + 1] == Approx(std::sin(3 * std::pow(10000.0, -2.0 / 6))));
  const auto x0 = randn(7 * ld, 41);
  auto x = x0;
  rope_rotate(x.data(), ld, off.data(), 3, heads, dh, cos_t.data(), sin_t.data(), false);
  // Row 5 is position 1 of the third sequence: head 1's pair 2 (columns 6 + 2 and 6 + 5) turns by theta_2.
  const double c = cos_t[1 * half + 2], s = sin_t[1 * half + 2];
  CHECK(x[5 * ld + 8] == Approx(x0[5 * ld + 8] * c - x0[5 * ld + 11] * s));
  CHECK(x[5 * ld + 11] == Approx(x0[5 * ld + 8] * s + x0[5 * ld + 11] * c));
  CHECK(x[4 * ld + 8] == x0[4 * ld + 8]);     // position 0: no turn
  CHECK(x[5 * ld + 12] == x0[5 * ld + 12]);   // columns past the heads are left alone
  rope_rotate(x.data(), ld, off.data(), 3, heads, dh, cos_t.data(), sin_t.data(), true);
  for (size_t i = 0; i < x.size(); ++i) CHECK(x[i] == Approx(x0[i]).margin(1e-12));
  // The backward of the rotation is the inverse rotation of the output's gradient.
  const auto R = randn(7 * ld, 42);
  std::vector<double> y;
  auto loss = [&] {
    y = x;
    rope_rotate(y.data(), ld, off.data(), 3, heads, dh, cos_t.data(), sin_t.data(), false);
    return dot(y, R);
  };
  auto g = R;
  rope_rotate(g.data(), ld, off.data(), 3, heads, dh, cos_t.data(), sin_t.data(), true);
  CHECK(fd_rel_error(x, g, loss) < kTol);
}

TEST_CASE("pooling backward matches finite differences, with masks", "[ops][grad]") {
  const int D = 3, B = 3;
  const std::vector<int32_t> off = {0, 4, 4, 7};  // example 1 is empty
  const std::vector<uint8_t> mask = {1, 1, 0, 1, 0, 0, 0};  // example 2 has no real row
  auto x = randn(7 * D, 17), R = randn(B * D, 18);
  std::vector<double> out(B * D), dx(7 * D);
  for (Pool kind : {Pool::Cls, Pool::Mean, Pool::Max}) {
    auto loss = [&] {
      pool_forward(out.data(), x.data(), off.data(), mask.data(), B, D, kind);
      return dot(out, R);
    };
    loss();
    for (double v : out) CHECK(std::isfinite(v));
    pool_backward(dx.data(), R.data(), x.data(), off.data(), mask.data(), B, D, kind);
    CHECK(fd_rel_error(x, dx, loss) < kTol);
  }
  pool_forward(out.data(), x.data(), off.data(), mask.data(), B, D, Pool::Mean);
  CHECK(out[0] == Approx((x[0] + x[3] + x[9]) / 3));
  CHECK(out[2 * D] == 0.0);
  // Max: example 0's real rows are 0, 1 and 3 (row 2 is masked); a tie goes to the first row.
  x[2 * D] = 100.0;
  x[0] = x[3] = x[9] = 5.0;
  pool_forward(out.data(), x.data(), off.data(), mask.data(), B, D, Pool::Max);
  CHECK(out[0] == 5.0);
  CHECK(out[2 * D] == 0.0);
  pool_backward(dx.data(), R.data(), x.data(), off.data(), mask.data(), B, D, Pool::Max);
  CHECK(dx[0] == R[0]);
  CHECK(dx[3] == 0.0);
  CHECK(dx[9] == 0.0);
  CHECK(dx[2 * D] == 0.0);
}

TEST_CASE("the dual encoder's pair features match their definition and finite differences", "[ops][grad]") {
  const int B = 3, D = 4;
  auto pooled = randn(2 * B * D, 31);
  for (Interaction kind : {Interaction::Nli, Interaction::Concat}) {
    const int K = pair_blocks(kind);
    auto R = randn(static_cast<size_t>(B * K * D), 32);
    std::vector<double> out(static_cast<size_t>(B * K * D)), dpooled(2 * B * D, 7.0);
    auto loss = [&] {
      pair_features_forward(out.data(), pooled.data(), B, D, kind);
      return dot(out, R);
    };
    loss();
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < D; ++c) {
        const double u = pooled[static_cast<size_t>(b * D + c)], v = pooled[static_cast<size_t>((B + b) * D + c)];
        const double* o = out.data() + b * K * D + c;
        CHECK(o[0] == u);
        CHECK(o[D] == v);
        if (K == 4) {
          CHECK(o[2 * D] == u * v);
          CHECK(o[3 * D] == u - v);
        }
      }
    pair_features_backward(dpooled.data(), R.data(), pooled.data(), B, D, kind);  // overwrites the 7s
    CHECK(fd_rel_error(pooled, dpooled, loss) < kTol);
  }
}

TEST_CASE("cross-entropy backward matches finite differences", "[ops][grad]") {
  const int B = 4, C = 5;
  auto z = randn(B * C, 19, 3.0);
  const std::vector<int32_t> labels = {0, 4, 2, 2};
  std::vector<double> probs(B * C), dz(B * C);
  auto loss = [&] { return cross_entropy_forward(probs.data(), static_cast<double*>(nullptr), z.data(), labels.data(), B, C); };
  loss();
  cross_entropy_backward(dz.data(), probs.data(), labels.data(), B, C);
  CHECK(fd_rel_error(z, dz, loss) < kTol);
  SECTION("large logits stay finite") {
    std::vector<double> big = {1000, -1000, 0, 0, 0};
    const double l = cross_entropy_forward(probs.data(), static_cast<double*>(nullptr), big.data(), labels.data(), 1, C);
    CHECK(l == Approx(0.0).margin(1e-12));
  }
}

TEST_CASE("AdamW matches PyTorch's update rule", "[ops]") {
  // One element through three steps, against the formula written out (torch.optim.AdamW).
  double p = 0.5, m = 0, v = 0;
  double rp = 0.5, rm = 0, rv = 0;
  AdamW hp;
  hp.lr = 0.01;
  hp.beta1 = 0.9;
  hp.beta2 = 0.98;
  hp.eps = 1e-9;
  hp.weight_decay = 0.1;
  const double grads[3] = {0.3, -0.2, 0.05};
  for (int t = 1; t <= 3; ++t) {
    adamw_update(&p, &grads[t - 1], &m, &v, 1, hp, t);
    rp *= 1 - hp.lr * hp.weight_decay;
    rm = hp.beta1 * rm + (1 - hp.beta1) * grads[t - 1];
    rv = hp.beta2 * rv + (1 - hp.beta2) * grads[t - 1] * grads[t - 1];
    rp -= hp.lr * (rm / (1 - std::pow(hp.beta1, t))) / (std::sqrt(rv / (1 - std::pow(hp.beta2, t))) + hp.eps);
    CHECK(p == Approx(rp).epsilon(1e-14));
  }
}

TEST_CASE("sum of squares is the same for any thread count", "[ops]") {
  auto x = cast<float>(randn(100000, 20));
  omp_set_num_threads(1);
  const double a = sum_squares(x.data(), static_cast<int64_t>(x.size()));
  omp_set_num_threads(2);
  const double b = sum_squares(x.data(), static_cast<int64_t>(x.size()));
  CHECK(a == b);
  CHECK(a == Approx(100000).epsilon(0.02));
}

TEST_CASE("philox matches the published known-answer vectors", "[rng]") {
  // Random123's kat_vectors for philox4x32_10.
  const U4 zero = philox4x32(0, 0, 0, 0, 0, 0);
  CHECK(zero.x[0] == 0x6627e8d5u);
  CHECK(zero.x[1] == 0xe169c58du);
  CHECK(zero.x[2] == 0xbc57ac4cu);
  CHECK(zero.x[3] == 0x9b00dbd8u);
  const U4 pi = philox4x32(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(pi.x[0] == 0xd16cfe09u);
  CHECK(pi.x[1] == 0x94fdccebu);
  CHECK(pi.x[2] == 0x5001e420u);
  CHECK(pi.x[3] == 0x24126ea1u);
}
