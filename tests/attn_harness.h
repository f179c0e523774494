// Runs one attention variant on packed random inputs laid out as the model lays them out (one fused
// QKV row per token, stride 3 Q), for the attention tests.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "attn/attention.h"
#include "test_util.h"

namespace lra::test {

template <class T>
struct AttnHarness {
  int H, dk, Q;
  std::vector<int32_t> offsets;
  std::vector<uint8_t> mask;  // empty = no key mask
  int L_pad;
  float attention_dropout;  // the variant's AttnConfig::attention_dropout
  std::unique_ptr<Attention<T>> attn;
  AttnParamStore<T> params;  // the variant's learned weights, if it has any
  std::vector<char> saved, scratch;
  std::vector<T> qkv, out, dout, dqkv;
  AttnStep step;

  AttnHarness(const std::string& name, int heads, int head_dim, std::vector<int> lengths, int l_pad,
              nlohmann::json hp = nlohmann::json::object(), float attn_dropout = 0.0f)
      : H(heads), dk(head_dim), Q(heads * head_dim), L_pad(l_pad), attention_dropout(attn_dropout) {
    offsets.push_back(0);
    int longest = 1;
    for (int len : lengths) {
      offsets.push_back(offsets.back() + len);
      longest = std::max(longest, len);
    }
    AttnConfig c;
    c.heads = H;
    c.dk = c.dv = dk;
    c.max_len = std::max(longest, l_pad);  // as in the model, whose plan covers the padded length
    c.threads = 2;
    c.attention_dropout = attn_dropout;
    c.hp = resolve_attention_params(find_attention(name), hp);
    attn = make_attention<T>(name, c);
    params.bind(*attn, 4242);
    const int B = static_cast<int>(lengths.size());
    saved.resize(attn->saved_bytes(B, rows()) + 64);
    scratch.resize(attn->scratch_bytes(B, rows()) + 64);
    qkv.assign(static_cast<size_t>(rows() * 3 * Q), T(0));
    out.assign(static_cast<size_t>(rows() * Q), T(0));
    dout.assign(out.size(), T(0));
    dqkv.assign(qkv.size(), T(0));
  }
  int64_t rows() const { return offsets.back(); }
  SeqBatch seq() const {
    SeqBatch s;
    s.B = static_cast<int>(offsets.size()) - 1;
    s.offsets = offsets.data();
    s.key_mask = mask.empty() ? nullptr : mask.data();
    s.L_pad = L_pad;
    s.dev_offsets = s.offsets;
    s.dev_key_mask = s.key_mask;
    return s;
  }
  AttnIO<T> io() {
    AttnIO<T> a;
    a.q = qkv.data();
    a.k = qkv.data() + Q;
    a.v = qkv.data() + 2 * Q;
    a.ld_in = 3 * Q;
    a.out = out.data();
    a.ld_out = Q;
    return a;
  }
  void forward() { attn->forward(seq(), io(), saved.data(), scratch.data(), step); }
  // Overwrites dqkv; the learned weights' gradients are zeroed first (they accumulate).
  void backward() {
    params.zero_grads();
    AttnGrads<T> g;
    g.dout = dout.data();
    g.dq = dqkv.data();
    g.dk = dqkv.data() + Q;
    g.dv = dqkv.data() + 2 * Q;
    attn->backward(seq(), io(), g, saved.data(), scratch.data(), step);
  }
  // Row r, head h, component c of q (0), k (1) or v (2).
  T& at(int which, int64_t r, int h, int c) { return qkv[static_cast<size_t>(r * 3 * Q + which * Q + h * dk + c)]; }
  T out_at(int64_t r, int h, int c) const { return out[static_cast<size_t>(r * Q + h * dk + c)]; }
};

// Hides every stride-th row's key, from row `first` on.
inline void mask_every(AttnHarness<double>& a, int64_t first, int64_t stride) {
  a.mask.assign(static_cast<size_t>(a.rows()), 1);
  for (int64_t r = first; r < a.rows(); r += stride) a.mask[static_cast<size_t>(r)] = 0;
}

// Sets every learned weight to N(0, scale^2) draws (weight i from seed + i), in place: the variant holds
// pointers to this storage.
inline void randomise_weights(AttnHarness<double>& a, uint64_t seed, double scale) {
  for (size_t i = 0; i < a.params.values.size(); ++i) {
    const auto w = randn(a.params.values[i].size(), seed + i, scale);
    std::copy(w.begin(), w.end(), a.params.values[i].begin());
  }
}

// l = sum(out * R) with qkv and R drawn from `seed`: the worst relative error, against central
// differences, of dqkv (qkv_samples coordinates) and of each learned weight's gradient (weight_samples
// coordinates each; every weight is also CHECKed against 1e-6 on its own, so a failure names it).
inline double attention_fd_error(AttnHarness<double>& a, uint64_t seed, size_t qkv_samples = 60,
                                 size_t weight_samples = 60) {
  a.qkv = randn(a.qkv.size(), seed);
  const auto R = randn(a.out.size(), seed + 1);
  a.dout = R;
  a.forward();
  a.backward();
  auto loss = [&] {
    a.forward();
    return dot(a.out, R);
  };
  double worst = fd_rel_error(a.qkv, a.dqkv, loss, qkv_samples, seed);
  for (size_t i = 0; i < a.params.values.size(); ++i) {
    INFO("learned weight " << a.attn->param_specs()[i].name);
    const double e = fd_rel_error(a.params.values[i], a.params.grads[i], loss, weight_samples, seed + 2 + i);
    CHECK(e < 1e-6);
    worst = std::max(worst, e);
  }
  return worst;
}

}  // namespace lra::test
