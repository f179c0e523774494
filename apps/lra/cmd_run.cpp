#include "cmd_run.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "attn/attention.h"
#include "backend/backend.h"
#include "core/check.h"
#include "core/system.h"
#include "dist/world.h"
#include "tasks/task.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/trainer.h"

namespace lra {

void setup_run(CLI::App& app, RunOptions& opt) {
  app.add_option("--task", opt.task, "task to train on")
      ->check(CLI::IsMember(task_names()))
      ->capture_default_str();
  app.add_option("--attn", opt.attn, "attention variant")
      ->check(CLI::IsMember(attention_names()))
      ->capture_default_str();
  app.add_option("--preset", opt.preset, "hyperparameter preset: cpu (small, minutes on a laptop) or paper "
                                         "(LRA's official config)")
      ->capture_default_str();
  app.add_option("--device", opt.device, "cpu or cuda")->capture_default_str();
  app.add_option("--config", opt.config_file, "JSON file of config keys applied after the preset");
  app.add_option("--set", opt.sets, "override any config key (or attention hyperparameter): key=value; repeatable")
      ->type_name("KEY=VALUE");
  app.add_option("--steps", opt.steps, "num_train_steps (default: from the preset)");
  app.add_option("--batch", opt.batch, "batch_size (default: from the preset)");
  app.add_option("--lr", opt.lr, "learning_rate (default: from the preset)");
  app.add_option("--seed", opt.seed, "seed of initialisation, data order and dropout")->capture_default_str();
  app.add_option("--threads", opt.threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--eval-every", opt.eval_every, "eval_frequency in steps (default: from the preset)");
  app.add_option("--data-dir", opt.data_dir, "folder with the official LRA files (default: built-in data)")
      ->envname("LRA_DATA_DIR");
  app.add_option("--cache-dir", opt.cache_dir, "where generated data is kept (default: $LRA_CACHE_DIR or "
                                               "~/.cache/lra)");
  app.add_option("--out", opt.out, "folder for the run record and checkpoints")->capture_default_str();
  app.add_option("--resume", opt.resume,
                 "continue the run saved in this checkpoint (.ckpt); its record is written beside it");
  app.add_option("--stop-after", opt.stop_after,
                 "stop after this many steps as if interrupted, keeping the checkpoint (for --resume)");
  app.add_flag("--keep-checkpoint", opt.keep_checkpoint, "keep the checkpoint after the run finishes");
  app.add_flag("-q,--quiet", opt.quiet, "no progress output (the record path is still printed)");
}

int run_run(const RunOptions& opt, const CLI::App& sub) {
  RunConfig cfg;
  if (!opt.resume.empty()) {
    for (const char* flag : {"--task", "--attn", "--preset", "--config", "--set", "--steps", "--batch", "--lr",
                             "--seed", "--eval-every", "--device"})
      LRA_CHECK(sub.count(flag) == 0, "{} cannot be combined with --resume: the run continues with the config "
                                     "saved in its checkpoint", flag);
    if (sub.count("--out") > 0) {
      std::error_code ec;
      const std::string dir = checkpoint_folder(opt.resume);
      LRA_CHECK(std::filesystem::equivalent(opt.out, dir, ec),
                "--out {}: a resumed run writes its record beside its checkpoint, in '{}'; drop --out (or move "
                "the checkpoint there first)",
                opt.out, dir);
    }
    cfg = config_from_checkpoint(opt.resume);
    if (sub.count("--threads") > 0) cfg.threads = opt.threads;
  } else {
    std::vector<std::string> sets = opt.sets;
    if (sub.count("--steps")) sets.push_back(fmt::format("num_train_steps={}", opt.steps));
    if (sub.count("--batch")) sets.push_back(fmt::format("batch_size={}", opt.batch));
    if (sub.count("--lr")) sets.push_back(fmt::format("learning_rate={}", opt.lr));
    if (sub.count("--eval-every")) sets.push_back(fmt::format("eval_frequency={}", opt.eval_every));
    cfg = resolve_config(opt.task, opt.attn, opt.preset, opt.config_file, sets);
    cfg.seed = opt.seed;
    cfg.threads = opt.threads;
    cfg.device = opt.device;
  }
  parse_device(cfg.device);
  Collective& w = world();
  TrainOptions topt;
  topt.world = &w;
  topt.out_dir = opt.out;
  topt.data_dir = opt.data_dir;
  topt.cache_dir = opt.cache_dir;
  topt.resume = opt.resume;
  topt.stop_after = opt.stop_after;
  topt.keep_checkpoint = opt.keep_checkpoint;
  topt.progress = !opt.quiet && w.rank() == 0;
  install_interrupt_handler();
  Trainer trainer(cfg, topt);
  int rc = 0;
  try {
    trainer.run();
  } catch (const RankFailure& e) {  // every rank knows: rank 0 writes the record, each exits
    trainer.fail(e.what());
    if (w.rank() == 0) std::fprintf(stderr, "lra run failed: %s\n", e.what());
    rc = 1;
  } catch (const std::exception& e) {
    trainer.fail(e.what());
    std::fprintf(stderr, "lra run failed%s: %s\n",
                 w.size() > 1 ? fmt::format(" on rank {} of {}", w.rank(), w.size()).c_str() : "", e.what());
    rc = 1;
    if (w.size() > 1) {  // a failure the other ranks cannot know of: end them rather than leave them waiting
      if (w.rank() == 0) std::printf("%s\n", trainer.write_record().c_str());
      std::fflush(nullptr);
      w.abort(1);
    }
  }
  if (w.rank() != 0) return rc;
  const std::string path = trainer.write_record();
  std::printf("%s\n", path.c_str());
  if (rc == 0 && interrupt_requested()) rc = interrupt_exit_code();
  return rc;
}

}  // namespace lra
