#include "runner/worker.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

#include "core/system.h"
#include "train/trainer.h"

namespace lra {

std::vector<AccuracyCellPlan> plan_from_folder(const GridRequest& req, const std::string& out,
                                               const ClaimFolder& claims, const std::string& retry_failed_before,
                                               bool print_skipped, const std::string& own_key) {
  RecordSet records;
  GridActivity activity;
  std::error_code ec;
  if (std::filesystem::exists(out, ec)) {
    records = load_records({out});
    OrphanScan scan = find_orphan_checkpoints(out, records);
    if (print_skipped) {
      for (const auto& s : records.skipped) std::fprintf(stderr, "lra reproduce: skipped %s\n", s.c_str());
      for (const auto& s : scan.skipped) std::fprintf(stderr, "lra reproduce: skipped %s\n", s.c_str());
    }
    activity.orphans = std::move(scan.orphans);
    activity.claims = claims.scan();
    activity.claims.erase(own_key);
  }
  activity.retry_failed_before = retry_failed_before;
  return plan_accuracy_grid(req, records, activity);
}

namespace {

// The first cell of the shard a worker may take that it has not tried yet (plan.size() when none).
size_t next_cell(const std::vector<AccuracyCellPlan>& plan, const Shard& shard, const std::set<std::string>& tried) {
  for (size_t i = 0; i < plan.size(); ++i)
    if (shard.holds(i) && cell_to_run(plan[i].state) && tried.count(plan[i].key) == 0) return i;
  return plan.size();
}

// Runs one claimed cell and writes its record; returns the record's status.
std::string run_cell(const AccuracyCellPlan& c, const WorkerOptions& opt, const Claim& claim) {
  TrainOptions topt;
  topt.out_dir = opt.out;
  topt.data_dir = opt.data_dir;
  topt.cache_dir = opt.cache_dir;
  topt.progress = opt.progress;
  RunConfig cfg = c.config;
  if (c.state == CellState::Resume) {
    try {
      cfg = config_from_checkpoint(c.existing);
      topt.resume = c.existing;
    } catch (const std::exception& e) {
      std::printf("  the checkpoint cannot be read (%s): running the cell from the start\n", e.what());
    }
  }
  cfg.threads = opt.threads;
  Trainer trainer(cfg, topt);
  try {
    trainer.run();
  } catch (const std::exception& e) {
    trainer.fail(e.what());
  }
  // A worker stopped for longer than the claim timeout has lost the cell to another: it writes nothing.
  if (!claim.held() && opt.on_lost_claim) opt.on_lost_claim();
  const std::string path = trainer.write_record();
  const nlohmann::json& rec = trainer.record();
  const std::string status = rec["status"].get<std::string>();
  if (status == "ok")
    std::printf("  ok: test accuracy %.2f%%  %s\n", 100 * rec["metrics"]["test_accuracy"].get<double>(),
                path.c_str());
  else
    std::printf("  %s%s%s  %s\n", status.c_str(), rec.contains("error") ? ": " : "",
                rec.value("error", std::string()).c_str(), path.c_str());
  std::fflush(stdout);
  return status;
}

}  // namespace

WorkerResult run_accuracy_worker(const GridRequest& req, const WorkerOptions& opt) {
  ClaimFolder claims(opt.out, opt.claim_timeout_s);
  const std::string retry_before = opt.retry_failed_before.empty() ? now_iso8601() : opt.retry_failed_before;
  WorkerResult result;
  std::set<std::string> tried;  // a cell is taken at most once by one worker
  int todo = -1, k = 0;
  std::string waiting_for;
  for (;;) {
    if (interrupt_requested()) {
      result.interrupted = true;
      break;
    }
    std::vector<AccuracyCellPlan> plan = plan_from_folder(req, opt.out, claims, retry_before, false);
    if (todo < 0) {
      todo = 0;
      for (size_t i = 0; i < plan.size(); ++i) todo += opt.shard.holds(i) && cell_to_run(plan[i].state);
    }
    const size_t i = next_cell(plan, opt.shard, tried);
    if (i == plan.size()) {
      std::vector<std::string> held;
      for (size_t j = 0; j < plan.size(); ++j)
        if (opt.shard.holds(j) && plan[j].state == CellState::Running)
          held.push_back(fmt::format("{} / {} seed {} ({})", plan[j].task, plan[j].attn, plan[j].seed, plan[j].note));
      if (held.empty() || !opt.wait_for_others) break;
      const std::string line = fmt::format("{}", fmt::join(held, "; "));
      if (line != waiting_for)
        std::printf("waiting for %zu cell(s) other workers hold (a dead worker's cell is taken over after %.0f s "
                    "without its heartbeat): %s\n",
                    held.size(), claims.timeout(), line.c_str());
      std::fflush(stdout);
      waiting_for = line;
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(1.0, claims.heartbeat_interval())));
      continue;
    }
    std::unique_ptr<Claim> claim = claims.try_claim(plan[i].key, opt.on_lost_claim);
    if (!claim) continue;  // another worker took it between the plan and the claim
    // Planned again under the claim: a worker that held it before may have finished it.
    plan = plan_from_folder(req, opt.out, claims, retry_before, false, claim->key());
    const AccuracyCellPlan& c = plan[i];
    tried.insert(c.key);
    if (!cell_to_run(c.state)) continue;  // done or failed meanwhile
    k += 1;
    todo = std::max(todo, k);
    std::printf("[%d/%d] %s / %s seed %llu: %s\n", k, todo, c.task.c_str(), c.attn.c_str(),
                static_cast<unsigned long long>(c.seed), c.state == CellState::Resume ? "resuming" : "running");
    std::fflush(stdout);
    waiting_for.clear();
    const std::string status = run_cell(c, opt, *claim);
    claim->release();
    result.ran += 1;
    result.failed += status == "failed";
    if (interrupt_requested()) {
      result.interrupted = true;
      break;
    }
  }
  if (result.interrupted) {
    const std::vector<AccuracyCellPlan> plan = plan_from_folder(req, opt.out, claims, retry_before, false);
    for (size_t i = 0; i < plan.size(); ++i)
      result.left += opt.shard.holds(i) && plan[i].state != CellState::Done && plan[i].state != CellState::Failed;
  }
  return result;
}

}  // namespace lra
