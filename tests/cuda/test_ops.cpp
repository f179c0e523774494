// Every op of lib/cuda/ops.h against the CPU op of lib/ops (float) on the same random inputs, judged by
// the normalised mean squared error (gpu_util.h):
//   < 1e-10 for element-wise results, < 1e-9 for results that involve a reduction (GEMMs, row or column
//   sums, softmax, pooling, gradients accumulated over rows);
//   dropout: the same bits as the CPU (the mask and the scaled values);
//   embedding backward: the same bits on two runs;  sum_squares: relative 1e-12 to the CPU's double sum.
// Shapes include odd sizes (N = 37, C = 130, D = 7), single rows, empty examples and large n; the nullptr
// paths (bias, dx, dpos, dcls, losses, key_mask) and both pool and GELU kinds are covered.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "cuda/ops.h"
#include "gpu_util.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace lra;
using namespace lra::test;

namespace {

constexpr double kElem = 1e-10, kReduce = 1e-9;

std::vector<float> rnd(size_t n, uint64_t seed, double scale = 1.0) { return cast<float>(randn(n, seed, scale)); }

// A packed batch: example b has lengths[b] rows (the first a CLS row when has_cls) and lengths[b] - has_cls
// tokens in [0, V); with `skew`, nine tokens in ten are token 0 (long runs in the backward's sort).
struct Packed {
  std::vector<int32_t> row_offsets{0}, tok_offsets{0}, tokens;
  int B = 0;
  int64_t rows = 0;
  int max_len = 0;
};

Packed make_packed(const std::vector<int>& lengths, bool has_cls, int V, bool skew, uint64_t seed) {
  Packed pk;
  Rng rng(seed, 5);
  for (int len : lengths) {
    const int ntok = len - (has_cls ? 1 : 0);
    for (int i = 0; i < ntok; ++i) {
      const bool zero = skew && rng.below(10) != 0;
      pk.tokens.push_back(zero ? 0 : static_cast<int32_t>(rng.below(static_cast<uint64_t>(V))));
    }
    pk.row_offsets.push_back(pk.row_offsets.back() + len);
    pk.tok_offsets.push_back(pk.tok_offsets.back() + ntok);
    pk.max_len = std::max(pk.max_len, len);
  }
  if (pk.tokens.empty()) pk.tokens.push_back(0);  // a valid device buffer for an all-CLS batch
  pk.B = static_cast<int>(lengths.size());
  pk.rows = pk.row_offsets.back();
  return pk;
}

double rel_sq(double gpu, double cpu) {
  const double d = gpu - cpu;
  return cpu != 0.0 ? d * d / (cpu * cpu) : d * d;
}

}  // namespace

TEST_CASE("cuda linear matches the CPU", "[cuda][ops]") {
  TestContext tc;
  struct Shape {
    int64_t N;
    int in, out;
  };
  const std::vector<Shape> shapes = {{37, 130, 7}, {64, 64, 256}, {1000, 96, 130}, {1, 3, 5}, {4099, 64, 33}};
  uint64_t seed = 100;
  for (const Shape& s : shapes) {
    for (int variant = 0; variant < 3; ++variant) {
      // 0: bias, dx and db;  1: no bias, no db;  2: bias, db, but no dx
      const bool bias = variant != 1, want_dx = variant != 2;
      INFO("N=" << s.N << " in=" << s.in << " out=" << s.out << " variant=" << variant);
      const auto x = rnd(static_cast<size_t>(s.N * s.in), ++seed), W = rnd(static_cast<size_t>(s.out * s.in), ++seed, 0.2),
                 b = rnd(static_cast<size_t>(s.out), ++seed), dy = rnd(static_cast<size_t>(s.N * s.out), ++seed);
      const auto dW0 = rnd(W.size(), ++seed), db0 = rnd(b.size(), ++seed);

      std::vector<float> y(static_cast<size_t>(s.N * s.out));
      linear_forward(y.data(), x.data(), W.data(), bias ? b.data() : nullptr, s.N, s.in, s.out);
      DeviceBuffer<float> gx(x), gW(W), gb(b), gy(y.size());
      cuda::linear_forward(gy, gx, gW, bias ? gb.ptr : nullptr, s.N, s.in, s.out, tc);
      CHECK(nmse(gy.download(), y) < kReduce);

      std::vector<float> dx(x.size(), 0.0f), dW = dW0, db = db0;
      linear_backward(want_dx ? dx.data() : nullptr, dW.data(), bias ? db.data() : nullptr, dy.data(), x.data(),
                      W.data(), s.N, s.in, s.out);
      DeviceBuffer<float> gdy(dy), gdx(std::vector<float>(x.size(), 123.0f)), gdW(dW0), gdb(db0);
      cuda::linear_backward(want_dx ? gdx.ptr : nullptr, gdW, bias ? gdb.ptr : nullptr, gdy, gx, gW, s.N, s.in, s.out,
                            tc);
      if (want_dx) CHECK(nmse(gdx.download(), dx) < kReduce);
      CHECK(nmse(gdW.download(), dW) < kReduce);
      CHECK(nmse(gdb.download(), db) < kReduce);  // untouched (db0) without a bias
    }
  }
}

TEST_CASE("cuda layernorm matches the CPU", "[cuda][ops]") {
  TestContext tc;
  struct Shape {
    int64_t N;
    int C;
  };
  const std::vector<Shape> shapes = {{37, 130}, {64, 1024}, {5, 1500}, {300, 7}, {1, 1}, {4096, 64}};
  uint64_t seed = 200;
  for (const Shape& s : shapes) {
    INFO("N=" << s.N << " C=" << s.C);
    const size_t n = static_cast<size_t>(s.N * s.C);
    auto x = rnd(n, ++seed, 2.0);
    for (float& v : x) v += 0.5f;
    const auto g = rnd(static_cast<size_t>(s.C), ++seed), b = rnd(static_cast<size_t>(s.C), ++seed),
               dy = rnd(n, ++seed), dx0 = rnd(n, ++seed), dg0 = rnd(g.size(), ++seed), db0 = rnd(b.size(), ++seed);
    const float eps = 1e-5f;

    std::vector<float> y(n), mean(static_cast<size_t>(s.N)), rstd(mean.size());
    layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), s.N, s.C, eps);
    DeviceBuffer<float> gx(x), gg(g), gb(b), gy(n), gmean(mean.size()), grstd(rstd.size());
    cuda::layernorm_forward(gy, gmean, grstd, gx, gg, gb, s.N, s.C, eps, tc);
    CHECK(nmse(gy.download(), y) < kReduce);
    CHECK(nmse(gmean.download(), mean) < kReduce);
    CHECK(nmse(grstd.download(), rstd) < kReduce);

    // The backward from the CPU's saved statistics on both sides; dx, dg and db accumulate.
    std::vector<float> dx = dx0, dg = dg0, db = db0;
    layernorm_backward(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(), g.data(), s.N,
                       s.C);
    DeviceBuffer<float> gdy(dy), gdx(dx0), gdg(dg0), gdb(db0), smean(mean), srstd(rstd);
    cuda::layernorm_backward(gdx, gdg, gdb, gdy, gx, smean, srstd, gg, s.N, s.C, tc);
    CHECK(nmse(gdx.download(), dx) < kReduce);
    CHECK(nmse(gdg.download(), dg) < kReduce);
    CHECK(nmse(gdb.download(), db) < kReduce);
  }
}

TEST_CASE("cuda gelu and relu match the CPU", "[cuda][ops]") {
  TestContext tc;
  uint64_t seed = 300;
  for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{1000003}}) {
    const auto x = rnd(static_cast<size_t>(n), ++seed, 3.0), dy = rnd(static_cast<size_t>(n), ++seed);
    DeviceBuffer<float> gx(x), gdy(dy), gy(x.size()), gdx(x.size());
    for (GeluKind kind : {GeluKind::Tanh, GeluKind::Exact}) {
      INFO("n=" << n << " gelu kind=" << (kind == GeluKind::Tanh ? "tanh" : "exact"));
      std::vector<float> y(x.size()), dx(x.size());
      gelu_forward(y.data(), x.data(), n, kind);
      gelu_backward(dx.data(), dy.data(), x.data(), n, kind);
      cuda::gelu_forward(gy, gx, n, kind, tc);
      CHECK(nmse(gy.download(), y) < kElem);
      cuda::gelu_backward(gdx, gdy, gx, n, kind, tc);
      CHECK(nmse(gdx.download(), dx) < kElem);
      DeviceBuffer<float> inplace(dy);  // dx == dy, as the model calls it
      cuda::gelu_backward(inplace, inplace, gx, n, kind, tc);
      CHECK(nmse(inplace.download(), dx) < kElem);
    }
    INFO("n=" << n << " relu");
    std::vector<float> y(x.size()), dx(x.size());
    relu_forward(y.data(), x.data(), n);
    relu_backward(dx.data(), dy.data(), y.data(), n);
    cuda::relu_forward(gy, gx, n, tc);
    CHECK(gy.download() == y);
    cuda::relu_backward(gdx, gdy, gy, n, tc);
    CHECK(gdx.download() == dx);
    DeviceBuffer<float> inplace(x);  // y == x, then dx == dy
    cuda::relu_forward(inplace, inplace, n, tc);
    CHECK(inplace.download() == y);
    DeviceBuffer<float> dinplace(dy);
    cuda::relu_backward(dinplace, dinplace, inplace, n, tc);
    CHECK(dinplace.download() == dx);
  }
}

TEST_CASE("cuda dropout matches the CPU bit for bit", "[cuda][ops]") {
  TestContext tc;
  const uint64_t seed = 0x5eed, stream = streams::kDropout | (7ull << 16) | 3;
  uint64_t data_seed = 400;
  for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{4099}, int64_t{(1 << 20) + 3}}) {
    const auto x = rnd(static_cast<size_t>(n), ++data_seed), res = rnd(static_cast<size_t>(n), ++data_seed);
    for (float p : {0.0f, 0.1f, 0.5f})
    for (uint64_t first : {uint64_t{0}, uint64_t{3}, uint64_t{4096 + 1}}) {  // x[0]'s stream element
      INFO("n=" << n << " p=" << p << " first=" << first);
      std::vector<float> y(x.size()), dx(x.size()), out(x.size());
      dropout_forward(y.data(), x.data(), n, p, seed, stream, first);
      dropout_backward(dx.data(), x.data(), n, p, seed, stream, first);
      residual_dropout_forward(out.data(), res.data(), x.data(), n, p, seed, stream, first);

      DeviceBuffer<float> gx(x), gres(res), gy(x.size()), gdx(x.size()), gout(x.size());
      cuda::dropout_forward(gy, gx, n, p, seed, stream, first, tc);
      CHECK(gy.download() == y);
      cuda::dropout_backward(gdx, gx, n, p, seed, stream, first, tc);
      CHECK(gdx.download() == dx);
      DeviceBuffer<float> inplace(x);  // y aliases x
      cuda::dropout_forward(inplace, inplace, n, p, seed, stream, first, tc);
      CHECK(inplace.download() == y);
      cuda::residual_dropout_forward(gout, gres, gx, n, p, seed, stream, first, tc);
      CHECK(nmse(gout.download(), out) < kElem);
      DeviceBuffer<float> res_inplace(res);  // out aliases res
      cuda::residual_dropout_forward(res_inplace, res_inplace, gx, n, p, seed, stream, first, tc);
      CHECK(nmse(res_inplace.download(), out) < kElem);

      // The mask alone: dropout of ones is 0 or 1/(1-p), the same on both devices.
      const std::vector<float> ones(x.size(), 1.0f);
      std::vector<float> mask(x.size());
      dropout_forward(mask.data(), ones.data(), n, p, seed, stream, first);
      DeviceBuffer<float> gmask(ones);
      cuda::dropout_forward(gmask, gmask, n, p, seed, stream, first, tc);
      const std::vector<float> gm = gmask.download();
      CHECK(gm == mask);
      if (n > 100000) {
        int64_t kept = 0;
        for (float v : gm) kept += v != 0.0f;
        CHECK(std::fabs(static_cast<double>(kept) / n - (1.0 - p)) < 0.01);
      }
    }
  }
}

TEST_CASE("cuda embedding forward matches the CPU", "[cuda][ops]") {
  TestContext tc;
  struct Case {
    std::vector<int> lengths;
    int D;
    bool cls;
  };
  const std::vector<Case> cases = {{{5, 1, 37, 12}, 7, false}, {{5, 1, 37, 12}, 7, true}, {{130, 64}, 130, true},
                                   {{0, 3, 0, 9}, 16, false}, {{2000, 1500}, 64, false}};
  const int V = 11;
  uint64_t seed = 500;
  for (const Case& c : cases) {
    INFO("B=" << c.lengths.size() << " D=" << c.D << " cls=" << c.cls);
    const Packed pk = make_packed(c.lengths, c.cls, V, false, ++seed);
    const auto wte = rnd(static_cast<size_t>(V) * c.D, ++seed), pos = rnd(static_cast<size_t>(pk.max_len + 1) * c.D, ++seed),
               cls = rnd(static_cast<size_t>(c.D), ++seed);
    std::vector<float> x(static_cast<size_t>(pk.rows) * c.D);
    embedding_forward(x.data(), pk.tokens.data(), pk.tok_offsets.data(), pk.row_offsets.data(), pk.B, wte.data(),
                      pos.data(), c.cls ? cls.data() : nullptr, c.D);
    DeviceBuffer<int32_t> gtok(pk.tokens), gtoff(pk.tok_offsets), groff(pk.row_offsets);
    DeviceBuffer<float> gwte(wte), gpos(pos), gcls(cls), gx(x.size());
    cuda::embedding_forward(gx, gtok, gtoff, groff, pk.B, gwte, gpos, c.cls ? gcls.ptr : nullptr, c.D, tc);
    CHECK(nmse(gx.download(), x) < kElem);
  }
}

TEST_CASE("cuda embedding backward matches the CPU and is deterministic", "[cuda][ops]") {
  TestContext tc;
  struct Case {
    std::vector<int> lengths;
    int D, V;
    bool cls, skew;
  };
  // Small batches; an empty example; one chunk wider than the batch (D = 512); long runs of one token
  // across many chunks (skew) with D below, at and above the 64-row minimum chunk.
  const std::vector<Case> cases = {{{5, 1, 37, 12}, 7, 11, false, false},  {{5, 1, 37, 12}, 7, 11, true, false},
                                   {{0, 3, 0, 9}, 16, 11, false, false},   {{40, 3}, 512, 11, true, false},
                                   {{130, 64}, 130, 300, true, false},     {{3000, 3000, 3000, 3000}, 64, 5, true, true},
                                   {{1000, 2000, 17}, 130, 7, false, true}, {{4096, 4096}, 7, 3, true, true},
                                   {{1, 1, 1}, 32, 4, true, false}};
  uint64_t seed = 600;
  for (const Case& c : cases) {
    const Packed pk = make_packed(c.lengths, c.cls, c.V, c.skew, ++seed);
    const auto dx = rnd(static_cast<size_t>(pk.rows) * c.D, ++seed);
    const auto dwte0 = rnd(static_cast<size_t>(c.V) * c.D, ++seed), dpos0 = rnd(static_cast<size_t>(pk.max_len) * c.D, ++seed),
               dcls0 = rnd(static_cast<size_t>(c.D), ++seed);
    DeviceBuffer<int32_t> gtok(pk.tokens), gtoff(pk.tok_offsets), groff(pk.row_offsets);
    DeviceBuffer<float> gdx(dx);
    DeviceBuffer<char> work(cuda::embedding_backward_workspace(pk.rows));
    for (bool with_pos : {true, false}) {
      INFO("B=" << c.lengths.size() << " rows=" << pk.rows << " D=" << c.D << " V=" << c.V << " cls=" << c.cls
                << " skew=" << c.skew << " dpos=" << with_pos);
      std::vector<float> dwte = dwte0, dpos = dpos0, dcls = dcls0;
      embedding_backward(dwte.data(), with_pos ? dpos.data() : nullptr, c.cls ? dcls.data() : nullptr, dx.data(),
                         pk.tokens.data(), pk.tok_offsets.data(), pk.row_offsets.data(), pk.B, c.D);
      std::vector<float> runs[2][3];
      for (auto& run : runs) {
        DeviceBuffer<float> gdwte(dwte0), gdpos(dpos0), gdcls(dcls0);
        cuda::embedding_backward(gdwte, with_pos ? gdpos.ptr : nullptr, c.cls ? gdcls.ptr : nullptr, gdx, gtok, gtoff,
                                 groff, pk.B, c.D, pk.rows, work, tc);
        run[0] = gdwte.download();
        run[1] = gdpos.download();
        run[2] = gdcls.download();
      }
      CHECK(nmse(runs[0][0], dwte) < kReduce);
      CHECK(nmse(runs[0][1], dpos) < kReduce);  // dpos0 untouched without a learned table
      CHECK(nmse(runs[0][2], dcls) < kReduce);  // dcls0 untouched without CLS
      CHECK(runs[0][0] == runs[1][0]);
      CHECK(runs[0][1] == runs[1][1]);
      CHECK(runs[0][2] == runs[1][2]);
    }
  }
}

TEST_CASE("cuda rotary embeddings match the CPU bit for bit", "[cuda][ops]") {
  TestContext tc;
  const std::vector<int> lengths = {5, 0, 37, 1, 200};
  const Packed pk = make_packed(lengths, false, 2, false, 730);
  DeviceBuffer<int32_t> groff(pk.row_offsets);
  const int heads = 4, dh = 8, P = 200;
  const int64_t ld = 3 * heads * dh;
  std::vector<float> cos_t(static_cast<size_t>(P) * dh / 2), sin_t(cos_t.size());
  rope_table(cos_t.data(), sin_t.data(), P, dh);
  DeviceBuffer<float> gcos(cos_t), gsin(sin_t);
  const auto x = rnd(static_cast<size_t>(pk.rows) * ld, 731);
  for (bool inverse : {false, true}) {
    INFO("inverse=" << inverse);
    std::vector<float> want = x;
    rope_rotate(want.data(), ld, pk.row_offsets.data(), pk.B, heads, dh, cos_t.data(), sin_t.data(), inverse);
    DeviceBuffer<float> gx(x);
    cuda::rope_rotate(gx, ld, groff, pk.B, pk.rows, heads, dh, gcos, gsin, inverse, tc);
    CHECK(gx.download() == want);
  }
}

TEST_CASE("cuda pooling matches the CPU", "[cuda][ops]") {
  TestContext tc;
  // Example 1 is empty, example 3 has one row, which the mask hides (it pools to 0).
  const std::vector<int> lengths = {5, 0, 37, 1, 12, 200};
  const Packed pk = make_packed(lengths, false, 2, false, 700);
  std::vector<uint8_t> mask(static_cast<size_t>(pk.rows));
  Rng rng(701, 5);
  for (auto& m : mask) m = rng.below(10) < 7 ? 1 : 0;
  mask[static_cast<size_t>(pk.row_offsets[3])] = 0;
  DeviceBuffer<int32_t> groff(pk.row_offsets);
  DeviceBuffer<uint8_t> gmask(mask);
  uint64_t seed = 710;
  for (int D : {7, 130}) {
    const auto x = rnd(static_cast<size_t>(pk.rows) * D, ++seed), dout = rnd(static_cast<size_t>(pk.B) * D, ++seed);
    DeviceBuffer<float> gx(x), gdout(dout);
    for (Pool kind : {Pool::Cls, Pool::Mean, Pool::Max}) {
      for (bool masked : {false, true}) {
        INFO("D=" << D << " kind=" << static_cast<int>(kind) << " key_mask=" << masked);
        const uint8_t* km = masked ? mask.data() : nullptr;
        std::vector<float> out(static_cast<size_t>(pk.B) * D), dx(x.size());
        pool_forward(out.data(), x.data(), pk.row_offsets.data(), km, pk.B, D, kind);
        pool_backward(dx.data(), dout.data(), x.data(), pk.row_offsets.data(), km, pk.B, D, kind);
        DeviceBuffer<float> gout(std::vector<float>(out.size(), 9.0f)), gdx(std::vector<float>(x.size(), 7.0f));
        cuda::pool_forward(gout, gx, groff, masked ? gmask.ptr : nullptr, pk.B, D, kind, tc);
        cuda::pool_backward(gdx, gdout, gx, groff, masked ? gmask.ptr : nullptr, pk.B, D, pk.rows, kind, tc);
        CHECK(nmse(gout.download(), out) < kReduce);
        CHECK(nmse(gdx.download(), dx) < kElem);  // every row written (the 7s are gone)
      }
    }
  }
}

TEST_CASE("cuda pair features match the CPU", "[cuda][ops]") {
  TestContext tc;
  for (int B : {1, 33}) {
    for (int D : {7, 130}) {
      const auto pooled = rnd(static_cast<size_t>(2 * B * D), 720 + static_cast<uint64_t>(B + D));
      DeviceBuffer<float> gpooled(pooled);
      for (Interaction kind : {Interaction::Nli, Interaction::Concat}) {
        INFO("B=" << B << " D=" << D << " kind=" << (kind == Interaction::Nli ? "nli" : "concat"));
        const size_t width = static_cast<size_t>(pair_blocks(kind) * D);
        const auto dout = rnd(static_cast<size_t>(B) * width, 730 + static_cast<uint64_t>(B + D));
        std::vector<float> out(static_cast<size_t>(B) * width), dpooled(pooled.size());
        pair_features_forward(out.data(), pooled.data(), B, D, kind);
        pair_features_backward(dpooled.data(), dout.data(), pooled.data(), B, D, kind);
        DeviceBuffer<float> gdout(dout), gout(std::vector<float>(out.size(), 9.0f)),
            gdpooled(std::vector<float>(pooled.size(), 7.0f));
        cuda::pair_features_forward(gout, gpooled, B, D, kind, tc);
        cuda::pair_features_backward(gdpooled, gdout, gpooled, B, D, kind, tc);
        CHECK(nmse(gout.download(), out) < kElem);
        CHECK(nmse(gdpooled.download(), dpooled) < kElem);  // overwritten: the 7s are gone
      }
    }
  }
}

TEST_CASE("cuda cross-entropy matches the CPU", "[cuda][ops]") {
  TestContext tc;
  uint64_t seed = 800;
  for (int B : {1, 37, 300}) {
    for (int C : {2, 10, 130}) {
      INFO("B=" << B << " C=" << C);
      const auto logits = rnd(static_cast<size_t>(B) * C, ++seed, 3.0);
      std::vector<int32_t> labels(static_cast<size_t>(B));
      Rng rng(++seed, 5);
      for (auto& l : labels) l = static_cast<int32_t>(rng.below(static_cast<uint64_t>(C)));
      std::vector<float> probs(logits.size()), losses(labels.size()), dlogits(logits.size());
      const double loss = cross_entropy_forward(probs.data(), losses.data(), logits.data(), labels.data(), B, C);
      cross_entropy_backward(dlogits.data(), probs.data(), labels.data(), B, C);

      DeviceBuffer<float> glogits(logits), gprobs(probs.size()), glosses(losses.size()), gdlogits(logits.size());
      DeviceBuffer<int32_t> glabels(labels);
      DeviceBuffer<double> gloss(1);
      cuda::cross_entropy_forward(gprobs, glosses, glogits, glabels, B, C, gloss, tc);
      CHECK(nmse(gprobs.download(), probs) < kReduce);
      CHECK(nmse(glosses.download(), losses) < kReduce);
      CHECK(rel_sq(gloss.download()[0], loss) < kReduce);
      DeviceBuffer<double> gloss2(1);
      cuda::cross_entropy_forward(gprobs, nullptr, glogits, glabels, B, C, gloss2, tc);
      CHECK(gloss2.download()[0] == gloss.download()[0]);

      DeviceBuffer<float> cpu_probs(probs);  // the same probabilities on both sides
      cuda::cross_entropy_backward(gdlogits, cpu_probs, glabels, B, C, tc);
      CHECK(nmse(gdlogits.download(), dlogits) < kElem);
    }
  }
}

TEST_CASE("cuda adamw, sum_squares and scale_inplace match the CPU", "[cuda][ops]") {
  TestContext tc;
  uint64_t seed = 900;
  SECTION("adamw") {
    for (int64_t n : {int64_t{37}, int64_t{100003}}) {
      for (double wd : {0.0, 0.05}) {
        for (int64_t t : {int64_t{1}, int64_t{1000}}) {
          INFO("n=" << n << " wd=" << wd << " t=" << t);
          AdamW hp;
          hp.lr = 3e-3;
          hp.weight_decay = wd;
          const auto p0 = rnd(static_cast<size_t>(n), ++seed), g = rnd(static_cast<size_t>(n), ++seed),
                     m0 = rnd(static_cast<size_t>(n), ++seed, 0.1);
          auto v0 = rnd(static_cast<size_t>(n), ++seed, 0.1);
          for (float& v : v0) v *= v;
          std::vector<float> p = p0, m = m0, v = v0;
          adamw_update(p.data(), g.data(), m.data(), v.data(), n, hp, t);
          DeviceBuffer<float> gp(p0), gg(g), gm(m0), gv(v0);
          cuda::adamw_update(gp, gg, gm, gv, n, hp, t, tc);
          CHECK(nmse(gp.download(), p) < kElem);
          CHECK(nmse(gm.download(), m) < kElem);
          CHECK(nmse(gv.download(), v) < kElem);
        }
      }
    }
  }
  SECTION("sum_squares") {
    DeviceBuffer<double> out(1), partials(cuda::kReduceBlocks);
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{37}, int64_t{511}, int64_t{512}, int64_t{513},
                      int64_t{100003}, int64_t{(1 << 24) + 5}}) {
      INFO("n=" << n);
      const auto x = rnd(static_cast<size_t>(n), ++seed, 2.0);
      const double cpu = sum_squares(x.data(), n);
      DeviceBuffer<float> gx(x);
      cuda::sum_squares(gx, n, out, partials, tc);
      const double gpu = out.download()[0];
      CHECK(std::fabs(gpu - cpu) <= 1e-12 * std::fabs(cpu));
      cuda::sum_squares(gx, n, out, partials, tc);
      CHECK(out.download()[0] == gpu);
    }
  }
  SECTION("scale_inplace") {
    for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{1000003}}) {
      INFO("n=" << n);
      const auto x = rnd(static_cast<size_t>(n), ++seed);
      std::vector<float> y = x;
      scale_inplace(y.data(), n, 0.37f);
      DeviceBuffer<float> gx(x);
      cuda::scale_inplace(gx, n, 0.37f, tc);
      CHECK(gx.download() == y);
    }
  }
}
