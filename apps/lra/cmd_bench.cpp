#include "cmd_bench.h"

#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

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

void setup_bench(CLI::App& bench, BenchTrainOptions& o) {
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
    Timer t;
    model.load_batch(batch);
    model.forward(true, o.seed, s);
    model.zero_grads();
    model.backward(o.seed, s);
    opt.step(model.param_block(), model.grad_block(), 1e-4, s + 1, 0.0);
    be->synchronize();
    if (s >= o.warmup) ms.push_back(t.ms());
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

}  // namespace lra
