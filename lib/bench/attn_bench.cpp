#include "bench/attn_bench.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>

#include "attn/attention.h"
#include "backend/backend.h"
#include "core/arena.h"
#include "core/check.h"
#include "core/init.h"
#include "core/rng.h"
#include "core/system.h"
#include "results/record.h"
#include "train/config.h"

namespace lra {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = std::min(s.find(',', start), s.size());
    std::string item = s.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

std::vector<int> parse_lengths(const std::string& s) {
  std::vector<int> out;
  for (const auto& item : split_list(s)) {
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    LRA_CHECK(used == item.size() && v > 0 && v <= std::numeric_limits<int32_t>::max(),
              "--lengths: '{}' is not a positive integer; give e.g. --lengths 1024,2048,3072,4096", item);
    out.push_back(static_cast<int>(v));
  }
  LRA_CHECK(!out.empty(), "--lengths is empty; give e.g. --lengths 1024,2048,3072,4096");
  return out;
}

// The host copies of one length's inputs, drawn from Rng(seed, streams::kBench) in a fixed order:
// weights first (so they are the same at every length), then x, then dout. Every variant gets the same.
struct AttnInputs {
  uint64_t seed = 0;  // also draws the variant's own learned weights
  std::vector<float> wqkv, bqkv, wo, bo, x, dout;
};

AttnInputs make_attn_inputs(uint64_t seed, int64_t rows, int D) {
  Rng rng(seed, streams::kBench);
  auto normal = [&](std::vector<float>& v, size_t n, double scale) {
    v.resize(n);
    for (auto& e : v) e = static_cast<float>(rng.normal() * scale);
  };
  AttnInputs in;
  in.seed = seed;
  const size_t d = static_cast<size_t>(D), r = static_cast<size_t>(rows);
  // W ~ N(0, 1/fan_in): with x ~ N(0, 1) each q, k, v component has about unit variance.
  normal(in.wqkv, 3 * d * d, 1.0 / std::sqrt(static_cast<double>(D)));
  normal(in.bqkv, 3 * d, 0.02);
  normal(in.wo, d * d, 1.0 / std::sqrt(static_cast<double>(D)));
  normal(in.bo, d, 0.02);
  normal(in.x, r * d, 1.0);
  normal(in.dout, r * d, 1.0);
  return in;
}

// One attention layer with its projections, for B examples of exactly L rows (R = B*L packed rows):
//   x: (R, D) -> qkv = x Wqkv^T + bqkv: (R, 3D) -> ao = Attn(q, k, v): (R, D) -> out = ao Wo^T + bo: (R, D)
// and, with gradients, the backward from dout: (R, D) to dao, dqkv, dx and dWo, dbo, dWqkv, dbqkv.
// Every buffer lives in an arena planned up front, as in Model: parameters, gradients (only with
// gradients), activations (inputs, outputs, what the attention saves, gradient buffers), scratch. The
// arenas are freed with the object.
class AttnLayerBench {
 public:
  AttnLayerBench(Backend<float>& be, const std::string& attn, const AttnConfig& ac, int B, int L, int D, bool grads)
      : be_(be),
        B_(B),
        L_(L),
        D_(D),
        R_(static_cast<int64_t>(B) * L),
        grads_(grads),
        params_("parameters", be.allocator()),
        grad_arena_("gradients", be.allocator()),
        acts_("activations", be.allocator()),
        scratch_("scratch", be.allocator()) {
    attn_ = be_.make_attention(attn, ac);
    layout();  // counting walk
    params_.reserve(params_.used());
    grad_arena_.reserve(grad_arena_.used());
    acts_.reserve(acts_.used());
    const size_t scratch = attn_->scratch_bytes(B_, R_);
    scratch_.reserve(scratch);
    layout();  // the same walk with the blocks: every pointer is real
    scr_ = scratch_.take_bytes(scratch);
    attn_->bind_params(attn_p_, attn_dp_);
  }

  void load(const AttnInputs& in) {
    host_offsets_.assign(static_cast<size_t>(B_) + 1, 0);
    for (int b = 0; b <= B_; ++b) host_offsets_[static_cast<size_t>(b)] = b * L_;
    be_.upload(offsets_, host_offsets_.data(), host_offsets_.size() * sizeof(int32_t));
    be_.upload(wqkv_, in.wqkv.data(), in.wqkv.size() * sizeof(float));
    be_.upload(bqkv_, in.bqkv.data(), in.bqkv.size() * sizeof(float));
    be_.upload(wo_, in.wo.data(), in.wo.size() * sizeof(float));
    be_.upload(bo_, in.bo.data(), in.bo.size() * sizeof(float));
    be_.upload(x_, in.x.data(), in.x.size() * sizeof(float));
    if (grads_) be_.upload(dout_, in.dout.data(), in.dout.size() * sizeof(float));
    // The variant's own learned weights, initialised as a model would.
    const auto specs = attn_->param_specs();
    for (size_t i = 0; i < specs.size(); ++i) {
      std::vector<float> host(static_cast<size_t>(specs[i].size()));
      Rng rng(in.seed, (streams::kInit << 32) | i);
      fill_init(host.data(), specs[i].size(), specs[i].init, specs[i].scale, rng);
      be_.upload(attn_p_[i], host.data(), host.size() * sizeof(float));
    }
  }

  void forward(const AttnStep& st) {
    be_.linear_forward(qkv_, x_, wqkv_, bqkv_, R_, D_, 3 * D_);
    attention_forward(st);
    be_.linear_forward(out_, ao_, wo_, bo_, R_, D_, D_);
  }

  // The attention alone, on the qkv (and, backward, the dao) that forward (backward) left.
  void attention_forward(const AttnStep& st) { attn_->forward(seq(), io(), saved_, scr_, st); }
  void attention_backward(const AttnStep& st) {
    AttnGrads<float> g;
    g.dout = dao_;
    g.dq = dqkv_;
    g.dk = dqkv_ + D_;
    g.dv = dqkv_ + 2 * D_;
    attn_->backward(seq(), io(), g, saved_, scr_, st);
  }

  // Parameter gradients accumulate (lib/ops convention), so they are zeroed first, as a trainer would.
  void backward(const AttnStep& st) {
    be_.fill_zero(dwqkv_, 3 * static_cast<int64_t>(D_) * D_);
    be_.fill_zero(dbqkv_, 3 * D_);
    be_.fill_zero(dwo_, static_cast<int64_t>(D_) * D_);
    be_.fill_zero(dbo_, D_);
    const auto specs = attn_->param_specs();
    for (size_t i = 0; i < specs.size(); ++i) be_.fill_zero(attn_dp_[i], specs[i].size());
    be_.linear_backward(dao_, dwo_, dbo_, dout_, ao_, wo_, R_, D_, D_);
    attention_backward(st);
    be_.linear_backward(dx_, dwqkv_, dbqkv_, dqkv_, x_, wqkv_, R_, D_, 3 * D_);
  }

  void synchronize() { be_.synchronize(); }

  // The attention output ao (R x D, before the output projection) of the last forward.
  std::vector<float> attention_output() const {
    std::vector<float> h(static_cast<size_t>(R_) * D_);
    be_.download(h.data(), ao_, h.size() * sizeof(float));
    return h;
  }

  nlohmann::json memory_json() const {
    return {{"params", params_.peak()},
            {"grads", grad_arena_.peak()},
            {"activations", acts_.peak()},
            {"scratch", scratch_.peak()}};
  }
  size_t peak_bytes() const { return params_.peak() + grad_arena_.peak() + acts_.peak() + scratch_.peak(); }

 private:
  void layout() {
    params_.rewind();
    grad_arena_.rewind();
    acts_.rewind();
    const size_t D = static_cast<size_t>(D_), R = static_cast<size_t>(R_);
    wqkv_ = params_.take<float>(3 * D * D);
    bqkv_ = params_.take<float>(3 * D);
    wo_ = params_.take<float>(D * D);
    bo_ = params_.take<float>(D);
    const auto specs = attn_->param_specs();
    attn_p_.assign(specs.size(), nullptr);
    attn_dp_.assign(specs.size(), nullptr);
    for (size_t i = 0; i < specs.size(); ++i) {
      attn_p_[i] = params_.take<float>(static_cast<size_t>(specs[i].size()));
      if (grads_) attn_dp_[i] = grad_arena_.take<float>(static_cast<size_t>(specs[i].size()));
    }
    offsets_ = acts_.take<int32_t>(static_cast<size_t>(B_) + 1);
    x_ = acts_.take<float>(R * D);
    qkv_ = acts_.take<float>(R * 3 * D);
    ao_ = acts_.take<float>(R * D);
    saved_ = acts_.take_bytes(attn_->saved_bytes(B_, R_));
    out_ = acts_.take<float>(R * D);
    if (!grads_) return;  // forward only: no gradient buffers at all
    dwqkv_ = grad_arena_.take<float>(3 * D * D);
    dbqkv_ = grad_arena_.take<float>(3 * D);
    dwo_ = grad_arena_.take<float>(D * D);
    dbo_ = grad_arena_.take<float>(D);
    dout_ = acts_.take<float>(R * D);
    dao_ = acts_.take<float>(R * D);
    dqkv_ = acts_.take<float>(R * 3 * D);
    dx_ = acts_.take<float>(R * D);
  }

  SeqBatch seq() const {
    SeqBatch s;
    s.B = B_;
    s.offsets = host_offsets_.data();
    s.L_pad = L_;
    s.dev_offsets = offsets_;
    return s;
  }

  AttnIO<float> io() const {
    AttnIO<float> a;
    a.q = qkv_;
    a.k = qkv_ + D_;
    a.v = qkv_ + 2 * D_;
    a.ld_in = 3 * D_;
    a.out = ao_;
    a.ld_out = D_;
    return a;
  }

  Backend<float>& be_;
  int B_, L_, D_;
  int64_t R_;
  bool grads_;
  Arena params_, grad_arena_, acts_, scratch_;
  std::unique_ptr<Attention<float>> attn_;
  int32_t* offsets_ = nullptr;
  std::vector<int32_t> host_offsets_;
  float *wqkv_ = nullptr, *bqkv_ = nullptr, *wo_ = nullptr, *bo_ = nullptr;
  float *dwqkv_ = nullptr, *dbqkv_ = nullptr, *dwo_ = nullptr, *dbo_ = nullptr;
  std::vector<float*> attn_p_, attn_dp_;  // the variant's own learned weights and their gradients
  float *x_ = nullptr, *qkv_ = nullptr, *ao_ = nullptr, *out_ = nullptr;
  float *dout_ = nullptr, *dao_ = nullptr, *dqkv_ = nullptr, *dx_ = nullptr;
  void* saved_ = nullptr;
  void* scr_ = nullptr;
};

// Error of an attention output against exact softmax, per row r of the (R x D) output:
//   e_r = ||ao_r - ref_r||_2 / ||ref_r||_2,  max_rel_err = max_r e_r,  mean_rel_err = mean_r e_r.
// (A zero reference row, which random inputs never give, counts its absolute error.)
std::pair<double, double> relative_errors(const std::vector<float>& ao, const std::vector<float>& ref, int D) {
  const size_t rows = ref.size() / static_cast<size_t>(D);
  double max_e = 0, sum_e = 0;
  for (size_t r = 0; r < rows; ++r) {
    double num = 0, den = 0;
    for (size_t c = r * static_cast<size_t>(D); c < (r + 1) * static_cast<size_t>(D); ++c) {
      const double d = static_cast<double>(ao[c]) - ref[c];
      num += d * d;
      den += static_cast<double>(ref[c]) * ref[c];
    }
    const double e = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    max_e = std::max(max_e, e);
    sum_e += e;
  }
  return {max_e, rows > 0 ? sum_e / static_cast<double>(rows) : 0.0};
}

// The backend timer's milliseconds of `steps` runs of fn after `warmup` untimed ones.
template <class Fn>
std::vector<double> time_runs(Backend<float>& be, int warmup, int steps, Fn&& fn) {
  std::vector<double> ms;
  for (int s = 0; s < warmup + steps; ++s) {
    be.timer_start();
    fn();
    const double t = be.timer_stop();
    if (s >= warmup) ms.push_back(t);
  }
  return ms;
}

// The Roofline at sizes that reach a device's ceiling: a 4096^3 GEMM and 256 MiB streams on a GPU,
// 1024^3 and 64 MiB on a CPU (whose ceilings these reach in well under a second).
Roofline measure_roofline(Backend<float>& be, int warmup, int steps) {
  Roofline r;
  const bool gpu = be.device() == Device::Cuda;
  r.gemm_n = gpu ? 4096 : 1024;
  r.stream_floats = gpu ? int64_t{1} << 26 : int64_t{1} << 24;
  const size_t n = static_cast<size_t>(r.gemm_n), m = static_cast<size_t>(r.stream_floats);
  Arena arena("roofline", be.allocator());
  float *x = nullptr, *w = nullptr, *b = nullptr, *y = nullptr, *s = nullptr, *t = nullptr;
  auto layout = [&] {
    arena.rewind();
    x = arena.take<float>(n * n);
    w = arena.take<float>(n * n);
    b = arena.take<float>(n);
    y = arena.take<float>(n * n);
    s = arena.take<float>(m);
    t = arena.take<float>(m);
  };
  layout();
  arena.reserve(arena.used());
  layout();
  // Non-zero operands (a GEMM of zeros draws less power, and may run faster, than real data).
  std::vector<float> host(std::max(n * n, m));
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(static_cast<int>(i % 17) - 8) * 0.01f;
  be.upload(x, host.data(), n * n * sizeof(float));
  be.upload(w, host.data(), n * n * sizeof(float));
  be.upload(s, host.data(), m * sizeof(float));
  be.fill_zero(b, static_cast<int64_t>(n));
  r.gemm_ms = percentile(
      time_runs(be, warmup, steps, [&] { be.linear_forward(y, x, w, b, r.gemm_n, r.gemm_n, r.gemm_n); }), 0.5);
  r.gemm_flops_per_s = 2.0 * std::pow(static_cast<double>(n), 3) / (r.gemm_ms * 1e-3);
  r.stream_ms = percentile(time_runs(be, warmup, steps, [&] { be.relu_forward(t, s, r.stream_floats); }), 0.5);
  r.stream_bytes_per_s = 8.0 * static_cast<double>(m) / (r.stream_ms * 1e-3);
  return r;
}

nlohmann::json roofline_json(const Roofline& r) {
  return {{"gemm_n", r.gemm_n},
          {"gemm_ms", r.gemm_ms},
          {"gemm_tflops", r.gemm_flops_per_s * 1e-12},
          {"stream_floats", r.stream_floats},
          {"stream_ms", r.stream_ms},
          {"stream_gb_per_s", r.stream_bytes_per_s * 1e-9}};
}

}  // namespace

double attention_flops(int B, int L, int D, bool causal, bool backward) {
  const double pairs = causal ? 0.5 * L * (L + 1.0) : static_cast<double>(L) * L;
  return (backward ? 12.0 : 4.0) * B * pairs * D;
}

double attention_bytes(int B, int L, int D, bool backward) {
  return (backward ? 12.0 : 4.0) * B * static_cast<double>(L) * D * sizeof(float);
}

AttnBenchPlan plan_attn_bench(const AttnBenchRequest& o) {
  AttnBenchPlan plan;
  plan.req = o;
  LRA_CHECK(o.mode == "fwd" || o.mode == "fwdbwd", "--mode must be fwd or fwdbwd, got '{}'", o.mode);
  plan.lengths = parse_lengths(o.lengths);
  LRA_CHECK(o.batch > 0, "--batch must be positive, got {}", o.batch);
  LRA_CHECK(o.heads > 0 && o.dim > 0, "--heads ({}) and --dim ({}) must be positive", o.heads, o.dim);
  LRA_CHECK(o.dim % o.heads == 0, "--dim ({}) must be divisible by --heads ({}): the head size is D/H", o.dim, o.heads);
  LRA_CHECK(o.steps > 0 && o.warmup >= 0, "--steps must be positive and --warmup non-negative, got {} and {}", o.steps,
            o.warmup);
  for (int L : plan.lengths)
    LRA_CHECK(static_cast<int64_t>(o.batch) * L <= std::numeric_limits<int32_t>::max(),
              "--batch {} x length {} rows do not fit the 32-bit row offsets", o.batch, L);

  // With --causal, "all" means every variant that has a causal mode.
  std::vector<std::string>& names = plan.names;
  const bool wants_causal = o.causal || std::find(o.sets.begin(), o.sets.end(), "causal=true") != o.sets.end();
  const Device device = parse_device(o.device);
  if (o.attn == "all") {
    for (const auto& a : attention_registry())
      if ((!wants_causal || has_hyperparam(a, "causal")) && has_device_path(a.name, device)) names.push_back(a.name);
  } else {
    names = split_list(o.attn);
  }
  LRA_CHECK(!names.empty(), "--attn is empty; give variant names ({}) or all", fmt::join(attention_names(), ", "));
  std::vector<const AttnInfo*> infos;
  for (size_t i = 0; i < names.size(); ++i) {
    infos.push_back(&find_attention(names[i]));  // unknown names throw, listing the valid ones
    for (size_t j = 0; j < i; ++j) LRA_CHECK(names[j] != names[i], "--attn lists '{}' twice", names[i]);
  }

  // --set values: each applies to every selected variant that has the key; a key none has is an error.
  // `--set causal=true` is the same as --causal (the softmax reference follows it too).
  bool causal = o.causal;
  nlohmann::json& sets = plan.sets;
  for (const auto& s : o.sets) {
    auto [key, value] = parse_set(s);
    if (key == "causal") {
      LRA_CHECK(value.is_boolean(), "--set causal expects true or false, got {}", value.dump());
      LRA_CHECK(!(o.causal && !value.get<bool>()), "--causal and --set causal=false contradict each other");
      causal = causal || value.get<bool>();
      sets[key] = value;
      continue;
    }
    bool used = false;
    for (const auto* info : infos) used = used || has_hyperparam(*info, key);
    if (!used) {
      std::vector<std::string> lists;
      for (const auto* info : infos) lists.push_back(fmt::format("{}: {}", info->name, hyperparam_list(*info)));
      LRA_FAIL(
          "--set {}: no selected attention variant has a hyperparameter '{}' (selected: {}; their "
          "hyperparameters: {})",
          s, key, fmt::join(names, ", "), fmt::join(lists, "; "));
    }
    sets[key] = value;
  }
  for (const auto* info : infos) {
    nlohmann::json given = nlohmann::json::object();
    for (auto it = sets.begin(); it != sets.end(); ++it)
      if (it.key() != "causal" && has_hyperparam(*info, it.key())) given[it.key()] = it.value();
    if (causal) {
      LRA_CHECK(has_hyperparam(*info, "causal"),
                "attention '{}' has no causal mode (its hyperparameters: {}); leave it out of --attn or drop --causal",
                info->name, hyperparam_list(*info));
      given["causal"] = true;
    }
    plan.hps.push_back(resolve_attention_params(*info, given));  // throws on a value of the wrong kind
  }
  plan.causal = causal;
  return plan;
}

namespace {

// What every measurement of one run_attn_bench shares.
struct BenchContext {
  const AttnBenchPlan& plan;
  Backend<float>& be;
  int threads;
  bool with_grads;
  const Roofline* roofline;  // nullptr: no roofline columns

  AttnConfig config(const nlohmann::json& hp, int L) const {
    AttnConfig ac;
    ac.heads = plan.req.heads;
    ac.dk = ac.dv = plan.req.dim / plan.req.heads;
    ac.max_len = L;
    ac.threads = threads;
    ac.layer = 0;
    ac.attention_dropout = 0.0f;
    ac.hp = hp;
    return ac;
  }
};

// The exact-softmax output on `in`, from its own arenas (freed before anything is timed).
std::vector<float> softmax_reference(const BenchContext& cx, const nlohmann::json& hp, const AttnInputs& in, int L) {
  const AttnBenchRequest& o = cx.plan.req;
  AttnLayerBench ref(cx.be, "softmax", cx.config(hp, L), o.batch, L, o.dim, /*grads=*/false);
  ref.load(in);
  ref.forward(AttnStep{false, o.seed, streams::kBench, 0});
  ref.synchronize();
  return ref.attention_output();
}

// Variant v of the plan at length L: the layer's time, memory and error against `ao_ref`, and with the
// roofline the attention alone against the ceilings. Its arenas are freed on return.
AttnBenchRow measure_variant(const BenchContext& cx, size_t v, const AttnInputs& in, const std::vector<float>& ao_ref,
                             int L) {
  const AttnBenchRequest& o = cx.plan.req;
  AttnBenchRow row;
  row.attn = cx.plan.names[v];
  row.len = L;
  row.hp = cx.plan.hps[v];
  AttnLayerBench layer(cx.be, row.attn, cx.config(row.hp, L), o.batch, L, o.dim, cx.with_grads);
  layer.load(in);
  const AttnStep st{cx.with_grads, o.seed, streams::kBench, 0};
  row.ms = time_runs(cx.be, o.warmup, o.steps, [&] {
    layer.forward(st);
    if (cx.with_grads) layer.backward(st);
  });
  row.median = percentile(row.ms, 0.5);
  row.lo = *std::min_element(row.ms.begin(), row.ms.end());
  row.hi = *std::max_element(row.ms.begin(), row.ms.end());
  if (cx.roofline != nullptr) {
    row.attn_ms = time_runs(cx.be, o.warmup, o.steps, [&] {
      layer.attention_forward(st);
      if (cx.with_grads) layer.attention_backward(st);
    });
    row.attn_median = percentile(row.attn_ms, 0.5);
    row.gemm_bound_ms =
        attention_flops(o.batch, L, o.dim, cx.plan.causal, cx.with_grads) / cx.roofline->gemm_flops_per_s * 1e3;
    row.bandwidth_bound_ms = attention_bytes(o.batch, L, o.dim, cx.with_grads) / cx.roofline->stream_bytes_per_s * 1e3;
  }
  row.peak = layer.peak_bytes();
  row.memory = layer.memory_json();
  std::tie(row.max_err, row.mean_err) = relative_errors(layer.attention_output(), ao_ref, o.dim);
  return row;
}

// One row of the bench record; `softmax` (nullptr when softmax was not measured) gives the ratios.
nlohmann::json row_json(const BenchContext& cx, const AttnBenchRow& row, const AttnBenchRow* softmax) {
  const AttnBenchRequest& o = cx.plan.req;
  nlohmann::json j = {{"bench", "attn"},
                      {"attn", row.attn},
                      {"len", row.len},
                      {"batch", o.batch},
                      {"heads", o.heads},
                      {"dim", o.dim},
                      {"head_dim", o.dim / o.heads},
                      {"mode", o.mode},
                      {"device", o.device},
                      {"causal", cx.plan.causal},
                      {"threads", cx.threads},
                      {"steps", o.steps},
                      {"warmup", o.warmup},
                      {"seed", o.seed},
                      {"ms_median", row.median},
                      {"ms_min", row.lo},
                      {"ms_max", row.hi},
                      {"ms", row.ms},
                      {"peak_arena_bytes", row.peak},
                      {"memory", row.memory},
                      {"max_rel_err", row.max_err},
                      {"mean_rel_err", row.mean_err},
                      {"attn_params", row.hp},
                      {"speed_vs_softmax", nullptr},
                      {"memory_vs_softmax", nullptr},
                      {"attn_ms_median", nullptr},
                      {"attn_ms", nullptr},
                      {"gemm_bound_ms", nullptr},
                      {"bandwidth_bound_ms", nullptr},
                      {"attn_vs_gemm_bound", nullptr},
                      {"attn_vs_bandwidth_bound", nullptr}};
  if (cx.roofline != nullptr) {
    j["attn_ms_median"] = row.attn_median;
    j["attn_ms"] = row.attn_ms;
    j["gemm_bound_ms"] = row.gemm_bound_ms;
    j["bandwidth_bound_ms"] = row.bandwidth_bound_ms;
    j["attn_vs_gemm_bound"] = row.attn_median / row.gemm_bound_ms;
    j["attn_vs_bandwidth_bound"] = row.attn_median / row.bandwidth_bound_ms;
  }
  if (softmax != nullptr) {
    j["speed_vs_softmax"] = softmax->median / row.median;
    j["memory_vs_softmax"] = static_cast<double>(softmax->peak) / static_cast<double>(row.peak);
  }
  return j;
}

}  // namespace

AttnBenchResult run_attn_bench(const AttnBenchPlan& plan, const std::function<void(const std::string&)>& progress,
                               const std::function<void(const nlohmann::json&)>& on_row) {
  const AttnBenchRequest& o = plan.req;
  auto note = [&](const std::string& s) {
    if (progress) progress(s);
  };
  AttnBenchResult result;
  set_threads(o.threads);
  result.threads = get_threads();
  result.env = env_json(result.threads);
  auto be = make_backend<float>(parse_device(o.device));
  if (const nlohmann::json dev = be->device_info(); !dev.empty()) result.env["device"] = dev;
  if (o.roofline) {
    note("the device's GEMM and streaming ceilings");
    result.roofline = measure_roofline(*be, o.warmup, o.steps);
    result.has_roofline = true;
  }
  const BenchContext cx{plan, *be, result.threads, o.mode == "fwdbwd", result.has_roofline ? &result.roofline : nullptr};
  const nlohmann::json ref_hp = resolve_attention_params(
      find_attention("softmax"), plan.causal ? nlohmann::json{{"causal", true}} : nlohmann::json::object());
  const auto softmax_at = std::find(plan.names.begin(), plan.names.end(), "softmax");

  for (int L : plan.lengths) {
    const AttnInputs in = make_attn_inputs(o.seed, static_cast<int64_t>(o.batch) * L, o.dim);
    note(fmt::format("L={}: softmax reference", L));
    const std::vector<float> ao_ref = softmax_reference(cx, ref_hp, in, L);
    std::vector<AttnBenchRow> rows;
    for (size_t v = 0; v < plan.names.size(); ++v) {
      note(fmt::format("L={}: {}", L, plan.names[v]));
      rows.push_back(measure_variant(cx, v, in, ao_ref, L));
    }
    const AttnBenchRow* softmax =
        softmax_at != plan.names.end() ? &rows[static_cast<size_t>(softmax_at - plan.names.begin())] : nullptr;
    for (const auto& row : rows) {
      nlohmann::json j = row_json(cx, row, softmax);
      if (on_row) on_row(j);
      result.rows.push_back(std::move(j));
    }
    result.table.push_back(std::move(rows));
  }
  return result;
}

nlohmann::json attn_bench_record(const AttnBenchPlan& plan, const AttnBenchResult& result,
                                 const nlohmann::json& extra_config) {
  const AttnBenchRequest& o = plan.req;
  nlohmann::json config = {
      {"attn", plan.names}, {"lengths", plan.lengths}, {"batch", o.batch},     {"heads", o.heads},   {"dim", o.dim},
      {"mode", o.mode},     {"causal", plan.causal},   {"threads", o.threads}, {"device", o.device}, {"steps", o.steps},
      {"warmup", o.warmup}, {"set", plan.sets},        {"seed", o.seed},       {"roofline", o.roofline}};
  config.update(extra_config);
  nlohmann::json rec = {{"schema_version", kRecordSchemaVersion},
                        {"kind", "bench_attn"},
                        {"created", now_iso8601()},
                        {"env", result.env},
                        {"config", config},
                        {"rows", result.rows}};
  if (result.has_roofline) rec["roofline"] = roofline_json(result.roofline);
  return rec;
}

}  // namespace lra
