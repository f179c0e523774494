// One training run: data -> model -> AdamW loop with periodic evaluation and checkpoints -> a run
// record. The record is built as the run goes, so a run that fails still has one (status "failed",
// with the error), and a sweep keeps going.
//
// A run may span several processes (ranks, TrainOptions::world): data parallelism. batch_size stays the
// global batch; rank r takes examples [share_begin(B, N, r), share_begin(B, N, r + 1)) of every global
// batch, weighs its gradients by its share, and one all-reduce per step sums them, so every rank applies
// the same AdamW step to the same parameters. Dropout is keyed by the example's place in the global
// batch, so the run is the one-process run up to the order of summation. Evaluation is split over the
// ranks and reduced; rank 0 writes checkpoints and the record. A failure on any rank stops every rank
// at the next collective, with the failing rank named (RankFailure).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/collective.h"
#include "train/config.h"

namespace lra {

// A failure every rank of a run knows of: each stops with it, so none is left waiting in a collective.
class RankFailure : public Error {
 public:
  RankFailure(int rank, const std::string& msg) : Error(msg), rank_(rank) {}
  int rank() const { return rank_; }

 private:
  int rank_;
};

struct TrainOptions {
  std::string out_dir = "results/runs";
  std::string data_dir;   // official files; empty = the task's built-in data
  std::string cache_dir;  // generated data; empty = default_cache_dir()
  std::string resume;     // a checkpoint to continue from; the record then goes beside it, not to out_dir
  int64_t stop_after = 0; // stop as if interrupted once this many steps are done (0 = never)
  bool keep_checkpoint = false;  // keep the checkpoint after a run that finished
  bool progress = true;   // progress bar (on a terminal) or log lines
  Collective* world = nullptr;  // the run's processes; nullptr: this process alone
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

struct EvalResult;
struct Split;

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
  void build_model_here();  // this rank's part
  void resume_or_init();
  void resume_or_init_here();
  void announce() const;
  void train_steps();  // the step loop, with evaluations, checkpoints and the progress display
  void record_speed_and_memory();
  void finish_interrupted();
  void finish_with_test();
  // Parts of the loop.
  double train_step(EpochSampler& sampler, double lr);  // one optimizer step; returns its loss
  void evaluate_val(double lr);  // a point of the curve
  // Accuracy and mean loss on `split`, each rank evaluating its share; the shares are then summed.
  EvalResult evaluate(const Split& split, int64_t last_step);
  void save_checkpoint_now();   // every rank calls it; rank 0 writes
  void save_checkpoint_here();
  // Stops the run on a NaN or an infinity: `what` (with the step and the last good checkpoint) becomes the
  // record's "non_finite", and the error says the same, how to fix it and where to resume from.
  [[noreturn]] void stop_non_finite(nlohmann::json what, const std::string& message);
  void draw_progress(double loss, double lr) const;
  // Runs f on this rank; when it throws here or on any other rank, every rank throws the first failing
  // rank's error as a RankFailure (alone, f's own exception goes through unchanged).
  template <class F>
  void together(F&& f);
  // The collective half of together(): `error` is this rank's ("" when it did not fail).
  void agree_on(const std::string& error);
  // Fails every rank unless `fingerprint` is the same on all of them.
  void check_same_on_all_ranks(uint64_t fingerprint, const std::string& what);

  struct State;
  RunConfig cfg_;
  TrainOptions opt_;
  Collective& world_;
  nlohmann::json record_;
  std::string run_id_, record_path_, checkpoint_path_;
  std::unique_ptr<State> st_;
};

// Loads the config stored in a checkpoint (what `--resume` continues with).
RunConfig config_from_checkpoint(const std::string& path);

}  // namespace lra
