// One training run: data -> model -> AdamW loop with periodic evaluation and checkpoints -> a run
// record. The record is built as the run goes, so a run that fails still has one (status "failed",
// with the error), and a sweep keeps going.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/config.h"

namespace lra {

struct TrainOptions {
  std::string out_dir = "results/runs";
  std::string data_dir;   // official files; empty = the task's built-in data
  std::string cache_dir;  // generated data; empty = default_cache_dir()
  std::string resume;     // a checkpoint to continue from; the record then goes beside it, not to out_dir
  int64_t stop_after = 0; // stop as if interrupted once this many steps are done (0 = never)
  bool keep_checkpoint = false;  // keep the checkpoint after a run that finished
  bool progress = true;   // progress bar (on a terminal) or log lines
};

// Visits the training set in a fresh permutation per epoch, as a pure function of (seed, step), so a
// resumed run sees exactly the batches of the uninterrupted one.
class EpochSampler {
 public:
  EpochSampler(size_t n, uint64_t seed) : n_(n), seed_(seed) {}
  std::vector<size_t> batch(int64_t step, int batch_size);

 private:
  const std::vector<size_t>& permutation(uint64_t epoch);
  size_t n_;
  uint64_t seed_;
  uint64_t cached_epoch_ = UINT64_MAX;
  std::vector<size_t> perm_;
};

class Trainer {
 public:
  Trainer(RunConfig cfg, TrainOptions opt);
  ~Trainer();
  // Runs to the end (or to an interruption). Throws on failure; record() then holds what was known.
  void run();
  // Marks the record failed with `error`.
  void fail(const std::string& error);
  const nlohmann::json& record() const { return record_; }
  // Writes the record (atomically) and returns its path.
  std::string write_record() const;

 private:
  // The steps of run(), in order.
  void load_data();
  void build_model();
  void resume_or_init();
  void announce() const;
  void train_steps();  // the step loop, with evaluations, checkpoints and the progress display
  void record_speed_and_memory();
  void finish_interrupted();
  void finish_with_test();
  // Parts of the loop.
  double train_step(EpochSampler& sampler, double lr);  // one optimizer step; returns its loss
  void evaluate_val(double lr);  // a point of the curve
  void save_checkpoint_now();
  // Stops the run on a NaN or an infinity: `what` (with the step and the last good checkpoint) becomes the
  // record's "non_finite", and the error says the same, how to fix it and where to resume from.
  [[noreturn]] void stop_non_finite(nlohmann::json what, const std::string& message);
  void draw_progress(double loss, double lr) const;

  struct State;
  RunConfig cfg_;
  TrainOptions opt_;
  nlohmann::json record_;
  std::string run_id_, record_path_, checkpoint_path_;
  std::unique_ptr<State> st_;
};

// Loads the config stored in a checkpoint (what `--resume` continues with).
RunConfig config_from_checkpoint(const std::string& path);

}  // namespace lra
