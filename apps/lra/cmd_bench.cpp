#include "cmd_bench.h"

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <tuple>

#include "attn/attention.h"
#include "backend/backend.h"
#include "core/check.h"
#include "core/rng.h"
#include "core/sys.h"
#include "model/model.h"
#include "results/record.h"
#include "train/config.h"
#include "train/optimizer.h"

namespace lra {

void setup_bench(CLI::App& bench, BenchTrainOptions& o, BenchAttnOptions& a) {
  bench.require_subcommand(1);
  CLI::App* train = bench.add_subcommand("train", "time full training steps (forward, backward, AdamW) on random tokens");
  train->add_option("--attn", o.attn, "attention variant")->check(CLI::IsMember(attention_names()))->capture_default_str();
  train->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  train->add_option("--len", o.len, "sequence length L (tokens per example, all real)")->capture_default_str();
  train->add_option("--batch", o.batch, "batch size B")->capture_default_str();
  train->add_option("--dim", o.dim, "model width D (emb_dim = qkv_dim)")->capture_default_str();
  train->add_option("--heads", o.heads, "attention heads H")->capture_default_str();
  train->add_option("--layers", o.layers, "encoder blocks N")->capture_default_str();
  train->add_option("--mlp", o.mlp, "MLP width")->capture_default_str();
  train->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  train->add_option("--steps", o.steps, "timed steps")->capture_default_str();
  train->add_option("--warmup", o.warmup, "untimed warm-up steps")->capture_default_str();
  train->add_option("--dropout", o.dropout, "dropout_rate")->capture_default_str();
  train->add_option("--attn-dropout", o.attn_dropout, "attention_dropout_rate")->capture_default_str();
  train->add_option("--set", o.sets, "attention hyperparameter key=value; repeatable")->type_name("KEY=VALUE");
  train->add_option("--seed", o.seed, "seed of the random tokens and weights")->capture_default_str();
  train->add_flag("--json", o.json, "print one JSON object");
  train->add_flag("--torch", o.torch,
                  "then time the same step in PyTorch (bench/torch_reference.py, Debian's python3-torch) and "
                  "print the ratio");
  train->add_option("--python", o.python, "Python interpreter with torch, for --torch")->capture_default_str();

  CLI::App* attn = bench.add_subcommand(
      "attn", "time one attention layer (qkv projection, attention, output projection) per variant and length");
  attn->add_option("--attn", a.attn, fmt::format("comma-separated attention variants, or all ({})",
                                                  fmt::join(attention_names(), ", ")))
      ->capture_default_str();
  attn->add_option("--lengths", a.lengths, "comma-separated sequence lengths L")->capture_default_str();
  attn->add_option("--batch", a.batch, "batch size B (every example exactly L rows)")->capture_default_str();
  attn->add_option("--heads", a.heads, "attention heads H (head size D/H)")->capture_default_str();
  attn->add_option("--dim", a.dim, "model width D = qkv_dim")->capture_default_str();
  attn->add_option("--mode", a.mode, "fwd (forward only) or fwdbwd (forward + backward from a random dout)")
      ->capture_default_str();
  attn->add_option("--device", a.device,
                   "cpu or cuda (on cuda, all means the variants with a GPU path; timed with CUDA events)")
      ->capture_default_str();
  attn->add_flag("--causal", a.causal, "causal attention for every variant (and the softmax reference)");
  attn->add_option("--threads", a.threads, "CPU threads (0 = all cores)")->capture_default_str();
  attn->add_option("--steps", a.steps, "timed runs per variant and length")->capture_default_str();
  attn->add_option("--warmup", a.warmup, "untimed warm-up runs before them")->capture_default_str();
  attn->add_option("--set", a.sets,
                   "attention hyperparameter key=value for every selected variant that has it; repeatable")
      ->type_name("KEY=VALUE");
  attn->add_option("--seed", a.seed, "seed of the random inputs, weights and dout")->capture_default_str();
  attn->add_flag("--json", a.json, "print one JSON object per (variant, length) instead of tables");
  attn->add_option("--out", a.out, "also write a bench record (JSON) to this file")->type_name("FILE");
  attn->footer(
      "Each (variant, length) times qkv = x Wqkv^T + b (D -> 3D), the attention, out = ao Wo^T + b (D -> D) on B x L "
      "rows, after the warm-up, and reports the median, min and max, and the peak bytes of the layer's planned "
      "arenas. Error against exact softmax: the softmax variant's forward (same causal setting, default "
      "hyperparameters) on the same inputs gives ao_ref; per row r of the attention output (B*L rows of D, before "
      "the output projection) e_r = ||ao_r - ao_ref_r||_2 / ||ao_ref_r||_2; max_rel_err = max_r e_r, mean_rel_err = "
      "mean_r e_r (0 for softmax).\n");
}

namespace {

// Runs bench/torch_reference.py on the same shapes and returns its JSON result.
nlohmann::json time_torch(const BenchTrainOptions& o, int threads) {
  const std::string script = std::string(LRA_SOURCE_DIR) + "/bench/torch_reference.py";
  const std::string cmd = fmt::format(
      "{} {} --json --attn {} --len {} --batch {} --dim {} --heads {} --layers {} --mlp {} --threads {} --steps {} "
      "--warmup {} --dropout {} --attn-dropout {} --seed {}",
      o.python, script, o.attn, o.len, o.batch, o.dim, o.heads, o.layers, o.mlp, threads, o.steps, o.warmup,
      o.dropout, o.attn_dropout, o.seed);
  FILE* p = popen(cmd.c_str(), "r");
  LRA_CHECK(p != nullptr, "could not start `{}`", cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  LRA_CHECK(status == 0 && !out.empty(),
            "the PyTorch reference failed (`{}`); it needs Python 3 with torch: run scripts/setup.sh --bench "
            "(Debian's python3-torch) or point --python at an interpreter that has it",
            cmd);
  const auto last = out.find_last_of('\n', out.size() - 2);
  return nlohmann::json::parse(last == std::string::npos ? out : out.substr(last + 1));
}

}  // namespace

int run_bench_train(const BenchTrainOptions& o) {
  set_threads(o.threads);
  const int threads = get_threads();
  ModelConfig mc;
  mc.vocab_size = 256;
  mc.num_classes = 10;
  mc.max_length = o.len;
  mc.emb_dim = o.dim;
  mc.qkv_dim = o.dim;
  mc.num_heads = o.heads;
  mc.num_layers = o.layers;
  mc.mlp_dim = o.mlp;
  mc.dropout_rate = o.dropout;
  mc.attention_dropout_rate = o.attn_dropout;
  mc.pool = Pool::Mean;  // no CLS row: the model sees exactly L rows per example
  mc.attn = o.attn;
  nlohmann::json hp = nlohmann::json::object();
  for (const auto& s : o.sets) {
    auto [key, value] = parse_set(s);
    hp[key] = value;
  }
  mc.attn_params = resolve_attention_params(find_attention(o.attn), hp);
  auto be = make_backend<float>(parse_device(o.device));
  Model<float> model(mc, *be, o.batch, threads);
  model.init_params(o.seed);
  AdamW adam;
  adam.beta2 = 0.98;
  adam.eps = 1e-9;
  adam.weight_decay = 0.1;
  AdamWOptimizer<float> opt(*be, model.num_params(), adam);

  Rng rng(o.seed, streams::kBench);
  Batch batch;
  batch.B = o.batch;
  batch.L_pad = o.len;
  batch.offsets.push_back(0);
  for (int b = 0; b < o.batch; ++b) {
    for (int i = 0; i < o.len; ++i) batch.tokens.push_back(static_cast<int32_t>(1 + rng.below(255)));
    batch.offsets.push_back(static_cast<int32_t>(batch.tokens.size()));
    batch.labels.push_back(static_cast<int32_t>(rng.below(10)));
  }
  std::vector<double> ms;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    be->timer_start();
    model.load_batch(batch);
    model.forward(true, o.seed, s);
    model.zero_grads();
    model.backward(o.seed, s);
    opt.step(model.param_block(), model.grad_block(), 1e-4, s + 1, 0.0);
    const double t = be->timer_stop();
    if (s >= o.warmup) ms.push_back(t);
  }
  const MemoryReport mem = model.memory();
  const size_t arena = mem.total() + opt.bytes();
  const double med = percentile(ms, 0.5);
  double lo = ms.empty() ? 0 : ms[0], hi = lo;
  for (double v : ms) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  nlohmann::json out = {{"bench", "train"},        {"attn", o.attn},         {"device", o.device},
                        {"len", o.len},            {"batch", o.batch},       {"dim", o.dim},
                        {"heads", o.heads},        {"layers", o.layers},     {"mlp", o.mlp},
                        {"threads", threads},      {"steps", o.steps},       {"warmup", o.warmup},
                        {"dropout", o.dropout},    {"attn_dropout", o.attn_dropout},
                        {"ms_per_step_median", med}, {"ms_per_step_min", lo}, {"ms_per_step_max", hi},
                        {"ms_per_step", ms},       {"peak_arena_bytes", arena},
                        {"peak_rss_bytes", peak_rss_bytes()}, {"num_params", model.num_params()},
                        {"env", env_json(threads)}};
  if (const nlohmann::json dev = be->device_info(); !dev.empty()) out["env"]["device"] = dev;
  if (o.torch) {
    const nlohmann::json t = time_torch(o, threads);
    out["torch"] = t;
    out["speedup_vs_torch"] = t["ms_per_step_median"].get<double>() / med;
    out["rss_ratio_vs_torch"] = t["peak_rss_bytes"].get<double>() / static_cast<double>(peak_rss_bytes());
  }
  if (o.json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("bench train: %s  L=%d B=%d D=%d H=%d N=%d MLP=%d  %d threads  (%lld parameters)\n", o.attn.c_str(),
              o.len, o.batch, o.dim, o.heads, o.layers, o.mlp, threads, static_cast<long long>(model.num_params()));
  std::printf("  ms/step  median %.1f  min %.1f  max %.1f  (%d steps after %d warm-up)\n", med, lo, hi, o.steps,
              o.warmup);
  std::printf("  memory   arena %.1f MiB  peak RSS %.1f MiB\n", arena / 1048576.0, peak_rss_bytes() / 1048576.0);
  if (o.torch) {
    const nlohmann::json& t = out["torch"];
    std::printf("  pytorch  median %.1f ms/step, peak RSS %.1f MiB (torch %s, BLAS %s)\n",
                t["ms_per_step_median"].get<double>(), t["peak_rss_bytes"].get<double>() / 1048576.0,
                t["env"]["torch"].get<std::string>().c_str(), t["env"]["blas"].get<std::string>().c_str());
    std::printf("  lra is %.2fx faster per step and uses %.2fx less peak RSS\n", out["speedup_vs_torch"].get<double>(),
                out["rss_ratio_vs_torch"].get<double>());
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// lra bench attn
// ---------------------------------------------------------------------------------------------------------

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
  AttnLayerBench(Backend<float>& be, const std::string& attn, const AttnConfig& ac, int B, int L, int D,
                 bool grads)
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
    attn_->forward(seq(), io(), saved_, scr_, st);
    be_.linear_forward(out_, ao_, wo_, bo_, R_, D_, D_);
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
    AttnGrads<float> g;
    g.dout = dao_;
    g.dq = dqkv_;
    g.dk = dqkv_ + D_;
    g.dv = dqkv_ + 2 * D_;
    attn_->backward(seq(), io(), g, saved_, scr_, st);
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

struct AttnRow {
  std::string attn;
  int len = 0;
  nlohmann::json hp;
  std::vector<double> ms;
  double median = 0, lo = 0, hi = 0;
  size_t peak = 0;
  nlohmann::json memory;
  double max_err = 0, mean_err = 0;
};

// 4 significant digits or so, for table cells.
std::string short_num(double v) {
  const double a = std::fabs(v);
  return a >= 1000 ? fmt::format("{:.0f}", v) : a >= 100 ? fmt::format("{:.1f}", v)
                                           : a >= 1 ? fmt::format("{:.2f}", v) : fmt::format("{:.3f}", v);
}

// One row per variant, one column per length.
void print_table(const std::string& title, const std::vector<std::string>& names, const std::vector<int>& lengths,
                 const std::function<std::string(size_t v, size_t l)>& cell) {
  size_t name_w = std::string("attention").size();
  for (const auto& n : names) name_w = std::max(name_w, n.size());
  std::vector<std::vector<std::string>> cells(names.size());
  size_t col_w = 0;
  for (size_t v = 0; v < names.size(); ++v)
    for (size_t l = 0; l < lengths.size(); ++l) {
      cells[v].push_back(cell(v, l));
      col_w = std::max(col_w, cells[v].back().size());
    }
  for (int L : lengths) col_w = std::max(col_w, fmt::format("L={}", L).size());
  std::printf("\n%s\n", title.c_str());
  std::string line = fmt::format("{:<{}}", "attention", name_w);
  for (int L : lengths) line += fmt::format("  {:>{}}", fmt::format("L={}", L), col_w);
  std::printf("%s\n", line.c_str());
  for (size_t v = 0; v < names.size(); ++v) {
    line = fmt::format("{:<{}}", names[v], name_w);
    for (const auto& c : cells[v]) line += fmt::format("  {:>{}}", c, col_w);
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace

int run_bench_attn(const BenchAttnOptions& o) {
  // Validate everything before measuring anything.
  LRA_CHECK(o.mode == "fwd" || o.mode == "fwdbwd", "--mode must be fwd or fwdbwd, got '{}'", o.mode);
  const bool with_grads = o.mode == "fwdbwd";
  const std::vector<int> lengths = parse_lengths(o.lengths);
  LRA_CHECK(o.batch > 0, "--batch must be positive, got {}", o.batch);
  LRA_CHECK(o.heads > 0 && o.dim > 0, "--heads ({}) and --dim ({}) must be positive", o.heads, o.dim);
  LRA_CHECK(o.dim % o.heads == 0, "--dim ({}) must be divisible by --heads ({}): the head size is D/H", o.dim,
            o.heads);
  LRA_CHECK(o.steps > 0 && o.warmup >= 0, "--steps must be positive and --warmup non-negative, got {} and {}",
            o.steps, o.warmup);
  for (int L : lengths)
    LRA_CHECK(static_cast<int64_t>(o.batch) * L <= std::numeric_limits<int32_t>::max(),
              "--batch {} x length {} rows do not fit the 32-bit row offsets", o.batch, L);

  // With --causal, "all" means every variant that has a causal mode.
  std::vector<std::string> names;
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
  nlohmann::json sets = nlohmann::json::object();
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
      LRA_FAIL("--set {}: no selected attention variant has a hyperparameter '{}' (selected: {}; their "
               "hyperparameters: {})",
               s, key, fmt::join(names, ", "), fmt::join(lists, "; "));
    }
    sets[key] = value;
  }
  std::vector<nlohmann::json> hps;
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
    hps.push_back(resolve_attention_params(*info, given));  // throws on a value of the wrong kind
  }
  const AttnInfo& ref_info = find_attention("softmax");
  const nlohmann::json ref_hp =
      resolve_attention_params(ref_info, causal ? nlohmann::json{{"causal", true}} : nlohmann::json::object());
  if (!o.out.empty()) {
    const auto parent = std::filesystem::path(o.out).parent_path();
    LRA_CHECK(parent.empty() || std::filesystem::is_directory(parent),
              "--out {}: the folder '{}' does not exist; create it or choose another path", o.out, parent.string());
  }

  set_threads(o.threads);
  const int threads = get_threads();
  nlohmann::json env = env_json(threads);
  const int H = o.heads, D = o.dim;
  auto be = make_backend<float>(device);
  if (const nlohmann::json dev = be->device_info(); !dev.empty()) env["device"] = dev;
  const auto softmax_at = std::find(names.begin(), names.end(), "softmax");
  const bool has_softmax = softmax_at != names.end();
  const size_t softmax_index = static_cast<size_t>(softmax_at - names.begin());
  const bool progress = !o.json && stderr_is_terminal();

  auto attn_config = [&](const nlohmann::json& hp, int L) {
    AttnConfig ac;
    ac.heads = H;
    ac.dk = ac.dv = D / H;
    ac.max_len = L;
    ac.threads = threads;
    ac.layer = 0;
    ac.attention_dropout = 0.0f;
    ac.hp = hp;
    return ac;
  };

  std::vector<std::vector<AttnRow>> table;  // [length][variant]
  nlohmann::json rows_json = nlohmann::json::array();
  for (int L : lengths) {
    const int64_t R = static_cast<int64_t>(o.batch) * L;
    const AttnInputs in = make_attn_inputs(o.seed, R, D);
    // The exact-softmax reference output on these inputs, from its own arenas (freed before timing).
    std::vector<float> ao_ref;
    {
      if (progress) std::fprintf(stderr, "  L=%d: softmax reference...\033[K\r", L);
      AttnLayerBench ref(*be, ref_info.name, attn_config(ref_hp, L), o.batch, L, D, /*grads=*/false);
      ref.load(in);
      ref.forward(AttnStep{false, o.seed, streams::kBench, 0});
      ref.synchronize();
      ao_ref = ref.attention_output();
    }
    std::vector<AttnRow> rows;
    for (size_t v = 0; v < names.size(); ++v) {
      if (progress) std::fprintf(stderr, "  L=%d: %s...\033[K\r", L, names[v].c_str());
      AttnRow row;
      row.attn = names[v];
      row.len = L;
      row.hp = hps[v];
      {
        AttnLayerBench layer(*be, names[v], attn_config(hps[v], L), o.batch, L, D, with_grads);
        layer.load(in);
        const AttnStep st{with_grads, o.seed, streams::kBench, 0};
        for (int s = 0; s < o.warmup + o.steps; ++s) {
          be->timer_start();
          layer.forward(st);
          if (with_grads) layer.backward(st);
          const double t = be->timer_stop();
          if (s >= o.warmup) row.ms.push_back(t);
        }
        row.median = percentile(row.ms, 0.5);
        row.lo = *std::min_element(row.ms.begin(), row.ms.end());
        row.hi = *std::max_element(row.ms.begin(), row.ms.end());
        row.peak = layer.peak_bytes();
        row.memory = layer.memory_json();
        std::tie(row.max_err, row.mean_err) = relative_errors(layer.attention_output(), ao_ref, D);
      }  // this variant's arenas are freed here, before the next one is planned
      rows.push_back(std::move(row));
    }
    for (const auto& row : rows) {
      nlohmann::json j = {{"bench", "attn"},
                          {"attn", row.attn},
                          {"len", row.len},
                          {"batch", o.batch},
                          {"heads", H},
                          {"dim", D},
                          {"head_dim", D / H},
                          {"mode", o.mode},
                          {"device", o.device},
                          {"causal", causal},
                          {"threads", threads},
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
                          {"memory_vs_softmax", nullptr}};
      if (has_softmax) {
        const AttnRow& sm = rows[softmax_index];
        j["speed_vs_softmax"] = sm.median / row.median;
        j["memory_vs_softmax"] = static_cast<double>(sm.peak) / static_cast<double>(row.peak);
      }
      if (o.json) std::printf("%s\n", j.dump().c_str());
      rows_json.push_back(std::move(j));
    }
    if (o.json) std::fflush(stdout);
    table.push_back(std::move(rows));
  }
  if (progress) std::fprintf(stderr, "\033[K");

  if (!o.out.empty()) {
    nlohmann::json config = {{"attn", names},     {"lengths", lengths}, {"batch", o.batch},  {"heads", H},
                             {"dim", D},          {"mode", o.mode},     {"causal", causal},  {"threads", o.threads},
                             {"device", o.device},
                             {"steps", o.steps},  {"warmup", o.warmup}, {"set", sets},       {"seed", o.seed},
                             {"json", o.json},    {"out", o.out}};
    const nlohmann::json record = {{"schema_version", kRecordSchemaVersion},
                                   {"kind", "bench_attn"},
                                   {"created", now_iso8601()},
                                   {"env", env},
                                   {"config", config},
                                   {"rows", rows_json}};
    try {
      write_record(o.out, record);
    } catch (const std::exception& e) {
      LRA_FAIL("--out {}: could not write the bench record: {}", o.out, e.what());
    }
  }
  if (o.json) return 0;

  std::printf("bench attn: B=%d D=%d H=%d (head size %d)  mode %s  causal %s  %d threads  %d steps after %d "
              "warm-up\n  CPU: %s\n",
              o.batch, D, H, D / H, o.mode.c_str(), causal ? "yes" : "no", threads, o.steps, o.warmup,
              env["cpu"].get<std::string>().c_str());
  if (env.contains("device")) std::printf("  GPU: %s\n", env["device"]["gpu"].get<std::string>().c_str());
  if (!sets.empty()) std::printf("  --set %s\n", sets.dump().c_str());
  auto ratio = [&](double x) { return has_softmax ? fmt::format(" ({:.2f}x)", x) : std::string(); };
  print_table(has_softmax ? "ms, median (x faster than softmax)" : "ms, median", names, lengths,
              [&](size_t v, size_t l) {
                const AttnRow& r = table[l][v];
                return short_num(r.median) + ratio(has_softmax ? table[l][softmax_index].median / r.median : 0);
              });
  print_table(has_softmax ? "peak MiB of the layer's arenas (x less than softmax)" : "peak MiB of the layer's arenas",
              names, lengths, [&](size_t v, size_t l) {
                const AttnRow& r = table[l][v];
                return short_num(r.peak / 1048576.0) +
                       ratio(has_softmax ? static_cast<double>(table[l][softmax_index].peak) / r.peak : 0);
              });
  print_table("relative error vs exact softmax, mean / max over rows of ||ao_r - ref_r|| / ||ref_r||", names, lengths,
              [&](size_t v, size_t l) {
                const AttnRow& r = table[l][v];
                if (r.max_err == 0) return std::string("0");
                return fmt::format("{:.1e} / {:.1e}", r.mean_err, r.max_err);
              });
  if (!o.out.empty()) std::printf("\nrecord: %s\n", o.out.c_str());
  return 0;
}

}  // namespace lra
