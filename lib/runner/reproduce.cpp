#include "runner/reproduce.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "attn/attention.h"
#include "backend/backend.h"
#include "core/check.h"
#include "core/files.h"
#include "core/system.h"
#include "tasks/task.h"
#include "train/checkpoint.h"

namespace lra {

namespace {

bool takes_key(const std::string& task, const std::string& attn, const std::string& key) {
  const auto keys = config_keys();
  if (key != "attn_params" && key != "task_params" && std::find(keys.begin(), keys.end(), key) != keys.end())
    return true;
  for (const HyperParam& p : find_task(task).params())
    if (p.name == key) return true;
  return has_hyperparam(find_attention(attn), key);
}

std::string set_key(const std::string& s) { return parse_set(s).first; }

}  // namespace

const char* cell_state_name(CellState s) {
  switch (s) {
    case CellState::Done:
      return "done";
    case CellState::Running:
      return "running";
    case CellState::Resume:
      return "resume";
    case CellState::Failed:
      return "failed";
    case CellState::Retry:
      return "retry";
    case CellState::Run:
      return "run";
  }
  return "?";
}

bool cell_to_run(CellState s) { return s == CellState::Resume || s == CellState::Retry || s == CellState::Run; }

Shard parse_shard(const std::string& s) {
  Shard sh;
  char extra = 0;
  LRA_CHECK(std::sscanf(s.c_str(), "%d/%d%c", &sh.index, &sh.count, &extra) == 2 && sh.count > 0 && sh.index >= 0 &&
                sh.index < sh.count,
            "--shard {}: expected K/N with 0 <= K < N (shard K of N takes cells K, K+N, K+2N, ...)", s);
  return sh;
}

Shard shard_from_slurm_env() {
  const char* id = std::getenv("SLURM_ARRAY_TASK_ID");
  const char* count = std::getenv("SLURM_ARRAY_TASK_COUNT");
  if (id == nullptr || count == nullptr) return {};
  const char* min = std::getenv("SLURM_ARRAY_TASK_MIN");
  Shard sh;
  try {
    sh.index = std::stoi(id) - (min != nullptr ? std::stoi(min) : 0);
    sh.count = std::stoi(count);
  } catch (const std::exception&) {
    LRA_FAIL("SLURM_ARRAY_TASK_ID={} / SLURM_ARRAY_TASK_COUNT={} are not numbers", id, count);
  }
  LRA_CHECK(sh.count > 0 && sh.index >= 0 && sh.index < sh.count,
            "SLURM_ARRAY_TASK_ID={} (less SLURM_ARRAY_TASK_MIN={}) is not below SLURM_ARRAY_TASK_COUNT={}: an array "
            "with steps (--array=0-8:2) cannot be split by task number; use --shard K/N",
            id, min != nullptr ? min : "0", count);
  return sh;
}

static std::string cell_key(const std::string& task, const std::string& attn, const std::string& preset, uint64_t seed,
                     const nlohmann::json& config) {
  const std::string text = config.dump();
  Fnv1a64 h;
  h.add(text.data(), text.size());
  return fmt::format("{}.{}.{}.seed{}.{:016x}", task, attn, preset, seed, h.h);
}

OrphanScan find_orphan_checkpoints(const std::string& dir, const RecordSet& records) {
  namespace fs = std::filesystem;
  OrphanScan scan;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return scan;
  std::set<std::string> recorded;
  for (const RunEntry& e : records.runs) recorded.insert(e.record.value("run_id", std::string()));
  std::vector<std::string> paths;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file(ec) && it->path().extension() == ".ckpt") paths.push_back(it->path().string());
  std::sort(paths.begin(), paths.end());
  for (const std::string& path : paths) {
    try {
      nlohmann::json meta = load_checkpoint_meta(path);
      // The plan reads an orphan's run_id, config and started_at: a checkpoint without them is skipped.
      const bool usable = meta.is_object() && meta.contains("run_id") && meta["run_id"].is_string() &&
                          meta.contains("config") && meta["config"].is_object() &&
                          (!meta.contains("started_at") || meta["started_at"].is_string());
      if (!usable) {
        scan.skipped.push_back(fmt::format("{}: its metadata has no string run_id, config object or string "
                                           "started_at; it was not written by lra run",
                                           path));
        continue;
      }
      if (recorded.count(meta["run_id"].get<std::string>()) == 0) scan.orphans.push_back({path, std::move(meta)});
    } catch (const std::exception& e) {
      scan.skipped.push_back(fmt::format("{}: {}", path, e.what()));
    }
  }
  return scan;
}

std::vector<AccuracyCellPlan> plan_accuracy_grid(const GridRequest& req, const RecordSet& existing,
                                                 const GridActivity& activity) {
  LRA_CHECK(req.seeds > 0, "--seeds must be at least 1, got {}", req.seeds);
  const std::vector<std::string> tasks = req.tasks.empty() ? task_names() : req.tasks;
  const std::vector<std::string> attns = req.attns.empty() ? report_attention_order() : req.attns;
  for (const auto& t : tasks) find_task(t);  // unknown names throw, listing the valid ones
  for (const auto& a : attns) find_attention(a);
  for (const auto& s : req.sets) set_key(s);
  std::set<std::string> used;
  std::vector<AccuracyCellPlan> plan;
  for (const auto& task : tasks)
    for (const auto& attn : attns) {
      std::vector<std::string> sets;
      for (const auto& s : req.sets)
        if (takes_key(task, attn, set_key(s))) {
          sets.push_back(s);
          used.insert(set_key(s));
        }
      RunConfig cfg = resolve_config(task, attn, req.preset, "", sets);
      cfg.device = req.device;
      for (int seed = 0; seed < req.seeds; ++seed) {
        AccuracyCellPlan cell;
        cell.task = task;
        cell.attn = attn;
        cell.seed = static_cast<uint64_t>(seed);
        cell.config = cfg;
        cell.config.seed = cell.seed;
        const nlohmann::json want = cell.config.to_json();
        cell.key = cell_key(task, attn, req.preset, cell.seed, want);
        const RunEntry *ok = nullptr, *resume = nullptr, *failed = nullptr;
        const OrphanCheckpoint* orphan = nullptr;
        std::vector<std::string> other;
        for (const RunEntry& e : existing.runs) {
          if (e.task != task || e.attn != attn || e.preset != req.preset || e.seed != cell.seed) continue;
          std::vector<std::string> diffs;
          if (!config_matches(e.record.value("config", nlohmann::json::object()), want, &diffs)) {
            other.push_back(fmt::format("{} ({})", e.path, fmt::join(diffs, ", ")));
            continue;
          }
          auto later = [&](const RunEntry* a) { return a == nullptr || e.started_at > a->started_at; };
          std::error_code ec;
          if (e.ok()) {
            if (later(ok)) ok = &e;
          } else if (e.status == "interrupted" && std::filesystem::exists(e.record.value("checkpoint", ""), ec)) {
            if (later(resume)) resume = &e;
          } else if (later(failed)) {
            failed = &e;
          }
        }
        for (const OrphanCheckpoint& o : activity.orphans) {
          if (!config_matches(o.meta.at("config"), want, nullptr)) continue;  // task, variant, preset, seed too
          if (orphan == nullptr || o.meta.value("started_at", "") > orphan->meta.value("started_at", "")) orphan = &o;
        }
        // Of an interrupted record's checkpoint and an orphan, the later run's.
        if (orphan != nullptr && resume != nullptr && resume->started_at > orphan->meta.value("started_at", ""))
          orphan = nullptr;
        const auto claim = activity.claims.find(cell.key);
        if (ok != nullptr) {
          cell.state = CellState::Done;
          cell.existing = ok->path;
        } else if (claim != activity.claims.end() && claim->second.live()) {
          const ClaimInfo& c = claim->second;
          cell.state = CellState::Running;
          cell.note = fmt::format("claimed by {} since {}{}", c.owner(), c.since,
                                  c.job.empty() ? "" : fmt::format(" (Slurm job {})", c.job));
        } else if (orphan != nullptr) {
          cell.state = CellState::Resume;
          cell.existing = orphan->path;
          cell.note = fmt::format("from step {} (its run stopped without a record)",
                                  orphan->meta.value("step", int64_t{0}));
        } else if (resume != nullptr) {
          cell.state = CellState::Resume;
          cell.existing = resume->record["checkpoint"].get<std::string>();
          cell.note = fmt::format("from step {}", resume->record["metrics"].value("steps_done", int64_t{0}));
        } else if (failed != nullptr) {
          // When the run failed (a resumed run keeps its first start): after the grid's planning time, it
          // failed in this grid.
          const std::string failed_at = failed->record.value("ended_at", failed->started_at);
          const bool this_grid = !activity.retry_failed_before.empty() && failed_at >= activity.retry_failed_before;
          cell.state = this_grid ? CellState::Failed : CellState::Retry;
          cell.existing = failed->path;
          cell.note = fmt::format("{}{}: {}", failed->status, this_grid ? "" : " before",
                                  failed->record.value("error", std::string("no error recorded")).substr(0, 160));
        } else if (!other.empty()) {
          cell.note = fmt::format("records with other settings do not count: {}", fmt::join(other, "; "));
        }
        if (claim != activity.claims.end() && claim->second.stale && cell_to_run(cell.state)) {
          const ClaimInfo& c = claim->second;
          cell.note += fmt::format("{}its claim by {} is dead ({}): the next worker takes it over",
                                   cell.note.empty() ? "" : "; ", c.owner(),
                                   c.gone ? "the process has exited"
                                          : fmt::format("no heartbeat for {:.0f} s", c.age_s));
        }
        plan.push_back(std::move(cell));
      }
    }
  for (const auto& s : req.sets)
    LRA_CHECK(used.count(set_key(s)) > 0,
              "--set {}: no cell takes '{}' (not a config key (see `lra run --help`), nor an option of the tasks, "
              "nor a hyperparameter of the variants: see `lra list tasks` and `lra list attn`)",
              s, set_key(s));
  return plan;
}

AttnBenchRequest efficiency_request(const GridRequest& req) {
  AttnBenchRequest r;
  LRA_CHECK(req.preset == "cpu" || req.preset == "paper",
            "--preset for lra-efficiency must be cpu (B 8, H 4, D 128) or paper (B 32, H 4, D 256), got '{}'",
            req.preset);
  r.lengths = "1024,2048,3072,4096";
  r.batch = req.preset == "paper" ? 32 : 8;
  r.heads = 4;
  r.dim = req.preset == "paper" ? 256 : 128;
  r.mode = "fwdbwd";
  r.device = req.device;
  r.threads = req.threads;
  r.sets = req.sets;
  r.roofline = false;  // the papers' table times whole layers; the ceilings are lra bench attn's
  return r;
}

bool bench_row_matches(const nlohmann::json& row, const nlohmann::json& env, const AttnBenchPlan& plan, size_t v,
                       int threads) {
  const AttnBenchRequest& o = plan.req;
  return row["attn"] == plan.names[v] && row["batch"] == o.batch && row["heads"] == o.heads && row["dim"] == o.dim &&
         row["mode"] == o.mode && row["device"] == o.device && row["causal"] == plan.causal &&
         row["threads"] == threads && row.value("steps", 0) == o.steps && row.value("warmup", -1) == o.warmup &&
         row.value("seed", uint64_t{0}) == o.seed && env.value("cpu", std::string()) == cpu_model_name() &&
         config_matches(row.value("attn_params", nlohmann::json::object()), plan.hps[v], nullptr);
}

std::vector<EfficiencyCellPlan> plan_efficiency_grid(const GridRequest& req, const RecordSet& existing) {
  std::vector<std::string> attns = req.attns;
  if (attns.empty())
    for (const auto& name : report_attention_order())
      if (has_device_path(name, parse_device(req.device))) attns.push_back(name);
  attns.erase(std::remove(attns.begin(), attns.end(), "softmax"), attns.end());
  attns.insert(attns.begin(), "softmax");
  const AttnBenchRequest base = efficiency_request(req);
  // Checks every variant and --set key at once, as `lra bench attn` would.
  AttnBenchRequest all = base;
  all.attn = fmt::format("{}", fmt::join(attns, ","));
  const AttnBenchPlan whole = plan_attn_bench(all);
  set_threads(req.threads);
  const int threads = get_threads();  // what a measurement now would use
  std::vector<EfficiencyCellPlan> plan;
  for (size_t v = 0; v < whole.names.size(); ++v) {
    EfficiencyCellPlan cell;
    cell.attn = whole.names[v];
    cell.bench = whole;
    cell.bench.req.attn = cell.attn;
    cell.bench.names = {cell.attn};
    cell.bench.hps = {whole.hps[v]};
    std::string newest;
    for (const BenchEntry& b : existing.benches) {
      std::set<int> lengths;
      for (const auto& row : b.record["rows"])
        if (bench_row_matches(row, b.record["env"], cell.bench, 0, threads)) lengths.insert(row["len"].get<int>());
      const bool all_lengths =
          std::all_of(whole.lengths.begin(), whole.lengths.end(), [&](int L) { return lengths.count(L) > 0; });
      const std::string created = b.record.value("created", std::string());
      if (all_lengths && (cell.existing.empty() || created > newest)) {
        cell.state = CellState::Done;
        cell.existing = b.path;
        newest = created;
      }
    }
    plan.push_back(std::move(cell));
  }
  return plan;
}

}  // namespace lra
