#include "cmd_bench.h"

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "attn/attention.h"
#include "backend/backend.h"
#include "bench/attn_bench.h"
#include "core/check.h"
#include "core/collective.h"
#include "core/rng.h"
#include "core/system.h"
#include "dist/world.h"
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
  train->add_flag("--breakdown", o.breakdown,
                  "also time each phase of the step (embedding, layer norms, projections, attention forward and "
                  "backward, MLP, dropout, pooling and head, optimizer); on a GPU each phase boundary synchronises");

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
  attn->add_flag_callback(
      "--no-roofline", [&a] { a.roofline = false; },
      "skip measuring the device's GEMM and streaming ceilings and timing the attention alone against them");
  attn->add_flag("--json", a.json, "print one JSON object per (variant, length) instead of tables");
  attn->add_option("--out", a.out, "also write a bench record (JSON) to this file")->type_name("FILE");
  attn->footer(
      "Each (variant, length) times qkv = x Wqkv^T + b (D -> 3D), the attention, out = ao Wo^T + b (D -> D) on B x L "
      "rows, after the warm-up, and reports the median, min and max, and the peak bytes of the layer's planned "
      "arenas. Error against exact softmax: the softmax variant's forward (same causal setting, default "
      "hyperparameters) on the same inputs gives ao_ref; per row r of the attention output (B*L rows of D, before "
      "the output projection) e_r = ||ao_r - ao_ref_r||_2 / ||ao_ref_r||_2; max_rel_err = max_r e_r, mean_rel_err = "
      "mean_r e_r (0 for softmax).\n"
      "Roofline (unless --no-roofline): the device's ceilings, measured once through the same backend: an n^3 "
      "fp32 GEMM (n = 4096 on a GPU, 1024 on a CPU) and a streaming op over 2^26 (2^24) floats. Each variant's "
      "attention is also timed alone (no projections) and read against the time those ceilings allow the least "
      "work any attention does: exact attention's matrix products, 4 B P D flops forward and 8 B P D backward "
      "(P = L^2 key-query pairs, L(L+1)/2 causal), and its inputs and outputs once, 4 B L D floats forward and 8 B "
      "L D backward.\n");
}

namespace {

// Runs bench/torch_reference.py on the same shapes and the same resolved attention hyperparameters and
// returns its JSON result (the script checks that it resolved the same settings, and runs torch on the
// best BLAS installed, without this machine's OpenBLAS kernel overrides).
nlohmann::json time_torch(const BenchTrainOptions& o, int threads, const nlohmann::json& attn_params) {
  const std::string script = std::string(LRA_SOURCE_DIR) + "/bench/torch_reference.py";
  const std::string cmd = fmt::format(
      "{} {} --json --attn {} --len {} --batch {} --dim {} --heads {} --layers {} --mlp {} --threads {} --steps {} "
      "--warmup {} --dropout {} --attn-dropout {} --seed {} --attn-params {}",
      o.python, script, o.attn, o.len, o.batch, o.dim, o.heads, o.layers, o.mlp, threads, o.steps, o.warmup,
      o.dropout, o.attn_dropout, o.seed, shell_quote(attn_params.dump()));
  const auto [status, out] = run_command(cmd);
  LRA_CHECK(status == 0 && !out.empty(),
            "the PyTorch reference failed (`{}`); it needs Python 3 with torch: run scripts/setup.sh --bench "
            "(Debian's python3-torch) or point --python at an interpreter that has it",
            cmd);
  const auto last = out.find_last_of('\n', out.size() - 2);
  return nlohmann::json::parse(last == std::string::npos ? out : out.substr(last + 1));
}

}  // namespace

namespace {

// What timing the training steps of one model gave.
struct StepTiming {
  std::vector<double> ms;       // per timed step
  std::vector<double> comm_ms;  // of those, in the gradient all-reduce (waiting for the slowest rank included)
  StepProfile prof;
  double optimizer_ms = 0.0;
  size_t arena = 0;
  int64_t num_params = 0;
};

// Times o.warmup + o.steps training steps on `whole`. In a world of N > 1 ranks each takes its share of
// the batch (slice_batch) and the gradients are summed with one all-reduce per step, as `lra run` does.
StepTiming time_training(const BenchTrainOptions& o, const ModelConfig& mc, Backend<float>& be, const Batch& whole,
                         int threads, Collective& w, bool breakdown) {
  const int N = w.size();
  const Batch b = N > 1 ? slice_batch(whole, static_cast<int>(share_begin(whole.B, N, w.rank())),
                                      static_cast<int>(share_begin(whole.B, N, w.rank() + 1)))
                        : whole;
  LRA_CHECK(b.B > 0, "--batch {} over {} ranks leaves rank {} no example; use a batch of at least {}", whole.B, N,
            w.rank(), N);
  Model<float> model(mc, be, b.B, threads);
  model.init_params(o.seed);
  AdamW adam;
  adam.beta2 = 0.98;
  adam.eps = 1e-9;
  adam.weight_decay = 0.1;
  AdamWOptimizer<float> opt(be, model.num_params(), adam);
  StepTiming t;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    const bool timed = s >= o.warmup;
    model.set_profile(breakdown && timed ? &t.prof : nullptr);
    be.timer_start();
    model.load_batch(b);
    model.forward(true, o.seed, s);
    model.zero_grads();
    model.backward(o.seed, s, N > 1 ? static_cast<double>(b.B) / whole.B : 1.0);
    if (N > 1) {
      be.synchronize();
      Timer comm;
      be.allreduce_sum(model.grad_block(), model.num_params(), w);
      if (timed) t.comm_ms.push_back(comm.ms());
    }
    Timer opt_clock;
    opt.step(model.param_block(), model.grad_block(), 1e-4, s + 1, 0.0);
    if (breakdown && timed) {
      be.synchronize();
      t.optimizer_ms += opt_clock.ms();
    }
    const double ms = be.timer_stop();
    if (timed) t.ms.push_back(ms);
  }
  model.set_profile(nullptr);
  t.arena = model.memory().total() + opt.bytes();
  t.num_params = model.num_params();
  return t;
}

}  // namespace

int run_bench_train(const BenchTrainOptions& o) {
  Collective& w = world();
  const int N = w.size();
  LRA_CHECK(!(o.torch && N > 1), "--torch compares one process with PyTorch; start it without mpirun");
  set_threads(o.threads, w.local_size());
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
  const StepTiming timing = time_training(o, mc, *be, batch, threads, w, o.breakdown);
  const std::vector<double>& ms = timing.ms;
  const StepProfile& prof = timing.prof;
  const double optimizer_ms = timing.optimizer_ms;
  // Scaling against one process: rank 0 alone then times the whole batch with the same threads while the
  // other ranks wait (sleeping, so they leave it their cores).
  nlohmann::json ranks;
  StepTiming alone;
  if (N > 1) {
    const nlohmann::json mine = {{"rank", w.rank()},
                                 {"host", host_name()},
                                 {"threads", threads},
                                 {"examples_per_step", share_size(o.batch, N, w.rank())},
                                 {"ms_per_step_median", percentile(timing.ms, 0.5)},
                                 {"comm_ms_per_step_median", percentile(timing.comm_ms, 0.5)}};
    ranks = nlohmann::json::array();
    for (const std::string& r : gather_strings(w, mine.dump())) ranks.push_back(nlohmann::json::parse(r));
    if (w.rank() == 0) alone = time_training(o, mc, *be, batch, threads, solo(), false);
    w.barrier();
    if (w.rank() != 0) return 0;
  }
  const size_t arena = timing.arena;
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
                        {"peak_rss_bytes", peak_rss_bytes()}, {"num_params", timing.num_params},
                        {"attn_params", mc.attn_params}, {"env", env_json(threads)}};
  if (const nlohmann::json dev = be->device_info(); !dev.empty()) out["env"]["device"] = dev;
  if (N > 1) {
    double comm = 0.0, total = 0.0;
    for (double v : timing.comm_ms) comm += v;
    for (double v : ms) total += v;
    const double one = percentile(alone.ms, 0.5);
    out["world"] = {{"size", N}, {"collective", w.name()}, {"ranks", ranks}};
    out["comm_ms_per_step_median"] = percentile(timing.comm_ms, 0.5);
    out["comm_share"] = total > 0 ? comm / total : 0.0;
    out["one_process_ms_per_step_median"] = one;
    out["speedup_vs_one_process"] = med > 0 ? one / med : 0.0;
    out["scaling_efficiency"] = med > 0 ? one / med / N : 0.0;
  }
  double mean_step = 0.0;
  for (double v : ms) mean_step += v / static_cast<double>(ms.size());
  if (o.breakdown) {
    // Means per timed step; "other" is the rest of the step (copying the batch in, zeroing the gradients).
    const double n = static_cast<double>(ms.size());
    nlohmann::json phases = nlohmann::json::object();
    for (int p = 0; p < static_cast<int>(Phase::Count); ++p)
      phases[phase_name(static_cast<Phase>(p))] = prof.ms[static_cast<size_t>(p)] / n;
    out["breakdown"] = {{"ms_per_step_mean", mean_step},
                        {"phases", phases},
                        {"optimizer", optimizer_ms / n},
                        {"other", mean_step - (prof.total() + optimizer_ms) / n}};
  }
  if (o.torch) {
    const nlohmann::json t = time_torch(o, threads, mc.attn_params);
    out["torch"] = t;
    out["speedup_vs_torch"] = t["ms_per_step_median"].get<double>() / med;
    out["rss_ratio_vs_torch"] = t["peak_rss_bytes"].get<double>() / static_cast<double>(peak_rss_bytes());
  }
  if (o.json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("bench train: %s  L=%d B=%d D=%d H=%d N=%d MLP=%d  %d threads  (%lld parameters)\n", o.attn.c_str(),
              o.len, o.batch, o.dim, o.heads, o.layers, o.mlp, threads, static_cast<long long>(timing.num_params));
  std::printf("  ms/step  median %.1f  min %.1f  max %.1f  (%d steps after %d warm-up)\n", med, lo, hi, o.steps,
              o.warmup);
  if (N > 1)
    std::printf("  %d ranks x %d threads (%s): all-reduce %.2f ms/step (%.1f%% of the step); one process x %d "
                "threads %.1f ms/step: %.2fx, scaling efficiency %.1f%%\n",
                N, threads, w.name().c_str(), out["comm_ms_per_step_median"].get<double>(),
                100 * out["comm_share"].get<double>(), threads, out["one_process_ms_per_step_median"].get<double>(),
                out["speedup_vs_one_process"].get<double>(), 100 * out["scaling_efficiency"].get<double>());
  std::printf("  memory   arena %.1f MiB  peak RSS %.1f MiB\n", arena / 1048576.0, peak_rss_bytes() / 1048576.0);
  if (o.breakdown) {
    const nlohmann::json& b = out["breakdown"];
    std::printf("  breakdown, ms per step (mean of %d steps, %.1f ms):\n", o.steps, mean_step);
    auto row = [&](const std::string& name, double v) {
      std::printf("    %-20s %9.2f  %5.1f%%\n", name.c_str(), v, mean_step > 0 ? 100.0 * v / mean_step : 0.0);
    };
    for (int p = 0; p < static_cast<int>(Phase::Count); ++p) {
      const char* name = phase_name(static_cast<Phase>(p));
      row(name, b["phases"][name].get<double>());
    }
    row("optimizer", b["optimizer"].get<double>());
    row("other", b["other"].get<double>());
  }
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
  const AttnBenchPlan plan = plan_attn_bench(o);
  if (!o.out.empty()) {
    const auto parent = std::filesystem::path(o.out).parent_path();
    LRA_CHECK(parent.empty() || std::filesystem::is_directory(parent),
              "--out {}: the folder '{}' does not exist; create it or choose another path", o.out, parent.string());
  }
  const bool progress = !o.json && stderr_is_terminal();
  const AttnBenchResult result = run_attn_bench(
      plan,
      [&](const std::string& note) {
        if (progress) std::fprintf(stderr, "  %s...\033[K\r", note.c_str());
      },
      [&](const nlohmann::json& row) {
        if (!o.json) return;
        std::printf("%s\n", row.dump().c_str());
        std::fflush(stdout);
      });
  if (progress) std::fprintf(stderr, "\033[K");

  if (!o.out.empty()) {
    try {
      write_record(o.out, attn_bench_record(plan, result, {{"json", o.json}, {"out", o.out}}));
    } catch (const std::exception& e) {
      LRA_FAIL("--out {}: could not write the bench record: {}", o.out, e.what());
    }
  }
  if (o.json) return 0;

  const std::vector<std::string>& names = plan.names;
  const std::vector<int>& lengths = plan.lengths;
  const auto& table = result.table;
  const auto softmax_at = std::find(names.begin(), names.end(), "softmax");
  const bool has_softmax = softmax_at != names.end();
  const size_t softmax_index = static_cast<size_t>(softmax_at - names.begin());
  const nlohmann::json& env = result.env;
  std::printf("bench attn: B=%d D=%d H=%d (head size %d)  mode %s  causal %s  %d threads  %d steps after %d "
              "warm-up\n  CPU: %s\n",
              o.batch, o.dim, o.heads, o.dim / o.heads, o.mode.c_str(), plan.causal ? "yes" : "no", result.threads,
              o.steps, o.warmup, env["cpu"].get<std::string>().c_str());
  if (env.contains("device")) std::printf("  GPU: %s\n", env["device"]["gpu"].get<std::string>().c_str());
  if (!plan.sets.empty()) std::printf("  --set %s\n", plan.sets.dump().c_str());
  if (result.has_roofline) {
    const Roofline& rf = result.roofline;
    std::printf("  ceilings: GEMM %d^3 %.3g TFLOP/s (%s ms), stream %.3g GB/s (%s ms)\n", rf.gemm_n,
                rf.gemm_flops_per_s * 1e-12, short_num(rf.gemm_ms).c_str(), rf.stream_bytes_per_s * 1e-9,
                short_num(rf.stream_ms).c_str());
  }
  auto ratio = [&](double x) { return has_softmax ? fmt::format(" ({:.2f}x)", x) : std::string(); };
  print_table(has_softmax ? "ms, median (x faster than softmax)" : "ms, median", names, lengths,
              [&](size_t v, size_t l) {
                const AttnBenchRow& r = table[l][v];
                return short_num(r.median) + ratio(has_softmax ? table[l][softmax_index].median / r.median : 0);
              });
  print_table(has_softmax ? "peak MiB of the layer's arenas (x less than softmax)" : "peak MiB of the layer's arenas",
              names, lengths, [&](size_t v, size_t l) {
                const AttnBenchRow& r = table[l][v];
                return short_num(r.peak / 1048576.0) +
                       ratio(has_softmax ? static_cast<double>(table[l][softmax_index].peak) / r.peak : 0);
              });
  print_table("relative error vs exact softmax, mean / max over rows of ||ao_r - ref_r|| / ||ref_r||", names, lengths,
              [&](size_t v, size_t l) {
                const AttnBenchRow& r = table[l][v];
                if (r.max_err == 0) return std::string("0");
                return fmt::format("{:.1e} / {:.1e}", r.mean_err, r.max_err);
              });
  if (result.has_roofline)
    print_table("attention alone, ms, median (x the GEMM-bound time of exact attention's flops / x the "
                "bandwidth-bound time of its inputs and outputs)",
                names, lengths, [&](size_t v, size_t l) {
                  const AttnBenchRow& r = table[l][v];
                  return fmt::format("{} ({:.2g}x / {:.2g}x)", short_num(r.attn_median),
                                     r.attn_median / r.gemm_bound_ms, r.attn_median / r.bandwidth_bound_ms);
                });
  if (!o.out.empty()) std::printf("\nrecord: %s\n", o.out.c_str());
  return 0;
}

}  // namespace lra
