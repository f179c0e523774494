#include "train/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "core/check.h"
#include "core/files.h"
#include "core/rng.h"
#include "core/system.h"
#include "model/model.h"
#include "results/record.h"
#include "tasks/task.h"
#include "train/checkpoint.h"
#include "train/non_finite.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace lra {

const std::vector<size_t>& EpochSampler::permutation(uint64_t epoch) {
  if (epoch != cached_epoch_) {
    perm_.resize(n_);
    std::iota(perm_.begin(), perm_.end(), size_t{0});
    Rng rng(seed_, (streams::kShuffle << 40) | epoch);
    for (size_t i = n_; i > 1; --i) std::swap(perm_[i - 1], perm_[rng.below(i)]);
    cached_epoch_ = epoch;
  }
  return perm_;
}

std::vector<size_t> EpochSampler::batch(int64_t step, int batch_size) {
  LRA_CHECK(n_ > 0, "the training set is empty");
  std::vector<size_t> idx(static_cast<size_t>(batch_size));
  for (int k = 0; k < batch_size; ++k) {
    const uint64_t pos = static_cast<uint64_t>(step) * batch_size + k;
    idx[static_cast<size_t>(k)] = permutation(pos / n_)[pos % n_];
  }
  return idx;
}

namespace {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// One rank's share of an evaluation: its correct predictions and summed loss.
struct EvalSums {
  double correct = 0.0, loss = 0.0;
};

template <class V>
void add_all(Fnv1a64& h, const V& v) {
  h.add(v.data(), v.size() * sizeof(v[0]));
}

// What every rank must have loaded alike: the splits' documents and labels.
uint64_t data_fingerprint(const TaskData& d) {
  Fnv1a64 h;
  for (const Split* s : {&d.train, &d.val, &d.test}) {
    add_all(h, s->tokens);
    add_all(h, s->offsets);
    add_all(h, s->labels);
  }
  return h.h;
}

}  // namespace

// An evaluation's outcome over the whole split.
struct EvalResult {
  double accuracy = 0.0, loss = 0.0;
};

// Everything a run holds: its data, device, model and optimizer, and where the step loop stands (what a
// checkpoint saves, and the counters the record's speed comes from).
struct Trainer::State {
  int threads = 0;
  TaskData data;
  std::unique_ptr<Backend<float>> be;
  std::unique_ptr<Model<float>> model;
  std::unique_ptr<AdamWOptimizer<float>> opt;
  std::unique_ptr<LrSchedule> lr_at;
  int64_t num_params = 0;

  Timer wall;                  // this process's share of the run
  double wall_before = 0.0;    // the run's wall time before a resume
  int64_t step = 0;            // steps done
  double best_val = -1.0;      // best validation accuracy so far (-1: none yet)
  int64_t best_step = 0;
  double last_val = -1.0;      // the latest validation accuracy (-1: none yet)
  double interval_loss = 0.0;  // training loss summed since the last evaluation
  int64_t interval_steps = 0;
  nlohmann::json curve = nlohmann::json::array();
  bool stopped_early = false;  // interrupted, or --stop-after reached
  int64_t checkpoint_step = -1;  // the step the checkpoint file holds (-1: none written or resumed from)

  std::vector<double> step_ms;  // this process's steps
  double train_seconds = 0.0;   // their time (evaluation excluded)
  int64_t tokens_seen = 0, examples_seen = 0;  // of the global batches
  int local_batch = 0;          // the most examples of a global batch one rank takes (what the model is planned for)
  std::vector<double> comm_ms;  // each step's time in collectives, waiting for the slowest rank included
  int signal = 0;               // the first interrupting signal any rank received, agreed by all (0: none)

  double wall_seconds() const { return wall_before + wall.seconds(); }
  // A count per second of training time.
  double per_second(double count) const { return train_seconds > 0 ? count / train_seconds : 0.0; }
  double steps_per_sec() const { return per_second(static_cast<double>(step_ms.size())); }

  // last_step: the training step whose random attention features the evaluation uses. Rank r of
  // `world` evaluates its share of the split (Trainer::evaluate sums the shares).
  EvalSums evaluate_share(const Split& split, int batch_size, int max_length, uint64_t seed, int64_t last_step,
                          const Collective& world) {
    EvalSums r;
    const auto n = static_cast<int64_t>(split.size());
    const auto lo = static_cast<size_t>(share_begin(n, world.size(), world.rank()));
    const auto hi = static_cast<size_t>(share_begin(n, world.size(), world.rank() + 1));
    size_t correct = 0;
    double loss_sum = 0.0;
    std::vector<size_t> idx;
    for (size_t start = lo; start < hi; start += static_cast<size_t>(batch_size)) {
      idx.clear();
      for (size_t i = start; i < std::min(hi, start + batch_size); ++i) idx.push_back(i);
      const Batch b = make_batch(split, idx, max_length);
      model->load_batch(b);
      loss_sum += model->forward(false, seed, last_step) * b.B;
      const std::vector<float> logits = model->logits();
      const int C = model->config().num_classes;
      for (int e = 0; e < b.B; ++e) {
        const float* z = logits.data() + static_cast<size_t>(e) * C;
        const int pred = static_cast<int>(std::max_element(z, z + C) - z);
        correct += pred == b.labels[static_cast<size_t>(e)];
      }
    }
    r.correct = static_cast<double>(correct);
    r.loss = loss_sum;
    return r;
  }
};

Trainer::Trainer(RunConfig cfg, TrainOptions opt)
    : cfg_(std::move(cfg)), opt_(std::move(opt)), world_(opt_.world != nullptr ? *opt_.world : solo()) {
  record_["schema_version"] = kRecordSchemaVersion;
  record_["task"] = cfg_.task;
  record_["attn"] = cfg_.model.attn;
  record_["device"] = cfg_.device;
  record_["preset"] = cfg_.preset;
  record_["seed"] = cfg_.seed;
  record_["config"] = cfg_.to_json();
  record_["status"] = "running";
  record_["started_at"] = now_iso8601();
  record_["wall_seconds"] = 0.0;
  record_["curve"] = nlohmann::json::array();
  if (!opt_.resume.empty()) {
    const nlohmann::json meta = load_checkpoint_meta(opt_.resume);
    LRA_CHECK(meta.is_object() && meta.contains("run_id") && meta["run_id"].is_string() && meta.contains("started_at"),
              "checkpoint '{}' holds no run_id and started_at; it was not written by `lra run` or is damaged",
              opt_.resume);
    run_id_ = meta["run_id"].get<std::string>();
    // The record is written as <run_id>.json beside the checkpoint: a name, not a path.
    LRA_CHECK(!run_id_.empty() && run_id_ != "." && run_id_ != ".." && run_id_.find('/') == std::string::npos,
              "checkpoint '{}' names its run '{}', which is not a file name; it is damaged", opt_.resume, run_id_);
    record_["started_at"] = meta["started_at"];
  } else {
    std::string ts = record_["started_at"].get<std::string>();
    ts.erase(std::remove_if(ts.begin(), ts.end(), [](char c) { return c == '-' || c == ':'; }), ts.end());
    const std::string base = fmt::format("{}_{}_{}_seed{}_{}", cfg_.task, cfg_.model.attn, cfg_.preset, cfg_.seed, ts);
    run_id_ = base;
    for (int k = 2; std::filesystem::exists(opt_.out_dir + "/" + run_id_ + ".json"); ++k)
      run_id_ = fmt::format("{}-{}", base, k);
  }
  record_["run_id"] = run_id_;
  if (opt_.resume.empty()) {
    record_path_ = opt_.out_dir + "/" + run_id_ + ".json";
    checkpoint_path_ = opt_.out_dir + "/" + run_id_ + ".ckpt";
  } else {  // the run goes on where it was: its record beside its checkpoint, which it keeps updating
    record_path_ = checkpoint_folder(opt_.resume) + "/" + run_id_ + ".json";
    checkpoint_path_ = opt_.resume;
  }
}

Trainer::~Trainer() = default;

RunConfig config_from_checkpoint(const std::string& path) {
  const nlohmann::json meta = load_checkpoint_meta(path);
  LRA_CHECK(meta.is_object() && meta.contains("config") && meta["config"].is_object(),
            "checkpoint '{}' holds no run config; it was not written by `lra run` or is damaged", path);
  try {
    return RunConfig::from_json(meta["config"]);
  } catch (const Error& e) {
    throw Error(fmt::format("checkpoint '{}' holds a config of the wrong form: {}", path, e.what()), e.detail());
  } catch (const nlohmann::json::exception& e) {
    LRA_FAIL("checkpoint '{}' holds a config of the wrong form ({}); it was not written by `lra run` or is damaged",
             path, e.what());
  }
}

void Trainer::fail(const std::string& error) {
  record_["status"] = "failed";
  record_["error"] = error;
  record_["ended_at"] = now_iso8601();
}

std::string Trainer::write_record() const {
  lra::write_record(record_path_, record_);
  return record_path_;
}

template <class F>
void Trainer::together(F&& f) {
  if (world_.size() == 1) {
    f();
    return;
  }
  std::string error;
  try {
    f();
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "an exception without a message";
  }
  agree_on(error);
}

void Trainer::agree_on(const std::string& error) {
  // The lowest failing rank r sends size - r; 0 means no rank failed.
  int64_t flag = error.empty() ? 0 : world_.size() - world_.rank();
  world_.allreduce_max(&flag, 1);
  if (flag == 0) return;
  const int bad = world_.size() - static_cast<int>(flag);
  const std::string message = broadcast_string(world_, error, bad);
  record_["failed_rank"] = bad;
  throw RankFailure(bad, fmt::format("rank {} of {} failed: {}", bad, world_.size(), message));
}

void Trainer::check_same_on_all_ranks(uint64_t fingerprint, const std::string& what) {
  if (world_.size() == 1) return;
  // Equal everywhere when the largest value is also the smallest (62 bits, so negation cannot overflow).
  const int64_t h = static_cast<int64_t>(fingerprint >> 2);
  int64_t v[2] = {h, -h};
  world_.allreduce_max(v, 2);
  if (v[0] == -v[1]) return;
  record_["failed_rank"] = nullptr;
  throw RankFailure(-1, fmt::format("the {} ranks hold different {}", world_.size(), what));
}

void Trainer::run() {
  st_ = std::make_unique<State>();
  set_threads(cfg_.threads, world_.local_size());
  st_->threads = get_threads();
  record_["env"] = env_json(st_->threads);
  if (world_.size() > 1) {
    std::string launcher;
    launched_ranks(&launcher);
    record_["world"] = {{"size", world_.size()}, {"collective", world_.name()}, {"launcher_variable", launcher}};
  }
  load_data();
  build_model();
  resume_or_init();
  announce();
  train_steps();
  record_speed_and_memory();
  if (st_->stopped_early)
    finish_interrupted();
  else
    finish_with_test();
}

void Trainer::load_data() {
  State& s = *st_;
  together([&] {
    s.data = find_task(cfg_.task).load(data_options(cfg_, opt_.data_dir, opt_.cache_dir, !opt_.progress));
    record_["dataset"] = s.data.info.to_json(s.data.train.size(), s.data.val.size(), s.data.test.size());
    LRA_CHECK(s.data.train.size() > 0, "task '{}' loaded no training examples", cfg_.task);
  });
  if (world_.size() > 1)
    check_same_on_all_ranks(data_fingerprint(s.data),
                            "data: every rank must read the same files (check --data-dir, $LRA_DATA_DIR and the cache "
                            "folder on every node)");
}

void Trainer::build_model() {
  together([&] { build_model_here(); });
}

void Trainer::build_model_here() {
  State& s = *st_;
  s.be = make_backend<float>(parse_device(cfg_.device));
  if (const nlohmann::json dev = s.be->device_info(); !dev.empty()) record_["env"]["device"] = dev;
  // The largest share of a global batch (shares differ by at most one): the model is planned for one
  // rank's examples.
  s.local_batch = (cfg_.batch_size + world_.size() - 1) / world_.size();
  s.model = std::make_unique<Model<float>>(cfg_.model, *s.be, s.local_batch, s.threads);
  AdamW hp;
  hp.beta1 = cfg_.beta1;
  hp.beta2 = cfg_.beta2;
  hp.eps = cfg_.adam_eps;
  hp.weight_decay = cfg_.weight_decay;
  s.num_params = s.model->num_params();
  s.opt = std::make_unique<AdamWOptimizer<float>>(*s.be, s.num_params, hp);
  record_["num_params"] = s.num_params;
  s.lr_at = std::make_unique<LrSchedule>(cfg_.factors, cfg_.learning_rate, cfg_.warmup,
                                         cfg_.steps_per_cycle > 0
                                             ? cfg_.steps_per_cycle
                                             : std::max<int64_t>(1, cfg_.num_train_steps - cfg_.warmup));
}

void Trainer::resume_or_init() {
  together([&] { resume_or_init_here(); });
}

void Trainer::resume_or_init_here() {
  State& s = *st_;
  if (opt_.resume.empty()) {
    s.model->init_params(cfg_.seed);
    return;
  }
  const Checkpoint c = load_checkpoint(opt_.resume);
  const int64_t n = s.num_params;
  LRA_CHECK(static_cast<int64_t>(c.params.size()) == n,
            "checkpoint '{}' holds {} parameters but this model has {}; it belongs to another config", opt_.resume,
            c.params.size(), n);
  s.be->upload(s.model->param_block(), c.params.data(), sizeof(float) * static_cast<size_t>(n));
  s.be->upload(s.opt->m(), c.m.data(), sizeof(float) * static_cast<size_t>(n));
  s.be->upload(s.opt->v(), c.v.data(), sizeof(float) * static_cast<size_t>(n));
  try {
    s.step = c.meta.at("step").get<int64_t>();
    s.curve = c.meta.at("curve");
    s.best_val = c.meta.at("best_val_accuracy").get<double>();
    s.best_step = c.meta.at("best_step").get<int64_t>();
    s.interval_loss = c.meta.at("interval_loss").get<double>();
    s.interval_steps = c.meta.at("interval_steps").get<int64_t>();
    s.wall_before = c.meta.at("wall_seconds").get<double>();
    s.last_val = s.curve.empty() ? -1.0 : s.curve.back().value("val_accuracy", -1.0);
  } catch (const nlohmann::json::exception& e) {
    LRA_FAIL("checkpoint '{}' lacks the trainer's state or holds it in the wrong form ({}); it was not written by "
             "`lra run` or is damaged: start the run again without --resume",
             opt_.resume, e.what());
  }
  s.checkpoint_step = s.step;
  record_["resumed_from_step"] = s.step;
  // The data order and dropout depend on the global batch only, so a run may resume at another world size.
  const int64_t was = c.meta.value("world_size", int64_t{1});
  if (was != world_.size()) record_["resumed_from_world_size"] = was;
}

void Trainer::announce() const {
  const State& s = *st_;
  if (opt_.progress)
    std::fprintf(stderr, "lra run: %s / %s, preset %s, %lld parameters, %zu train / %zu val / %zu test (%s), %d threads\n",
                 cfg_.task.c_str(), cfg_.model.attn.c_str(), cfg_.preset.c_str(), static_cast<long long>(s.num_params),
                 s.data.train.size(), s.data.val.size(), s.data.test.size(), s.data.info.source.c_str(), s.threads);
}

void Trainer::save_checkpoint_now() {
  together([&] {
    if (world_.rank() == 0) save_checkpoint_here();
  });
  st_->checkpoint_step = st_->step;
}

void Trainer::save_checkpoint_here() {
  State& s = *st_;
  const size_t n = static_cast<size_t>(s.num_params);
  std::vector<float> p(n), m(n), v(n);
  s.be->download(p.data(), s.model->param_block(), sizeof(float) * n);
  s.be->download(m.data(), s.opt->m(), sizeof(float) * n);
  s.be->download(v.data(), s.opt->v(), sizeof(float) * n);
  const nlohmann::json meta = {{"run_id", run_id_},
                               {"started_at", record_["started_at"]},
                               {"config", cfg_.to_json()},
                               {"step", s.step},
                               {"curve", s.curve},
                               {"best_val_accuracy", s.best_val},
                               {"best_step", s.best_step},
                               {"interval_loss", s.interval_loss},
                               {"interval_steps", s.interval_steps},
                               {"wall_seconds", s.wall_seconds()},
                               {"world_size", world_.size()}};
  save_checkpoint(checkpoint_path_, meta, p.data(), m.data(), v.data(), s.num_params);
}

void Trainer::stop_non_finite(nlohmann::json what, const std::string& message) {
  const State& s = *st_;
  what["step"] = s.step;
  what["checkpoint"] = s.checkpoint_step >= 0 ? nlohmann::json(checkpoint_path_) : nlohmann::json(nullptr);
  what["checkpoint_step"] = s.checkpoint_step >= 0 ? nlohmann::json(s.checkpoint_step) : nlohmann::json(nullptr);
  record_["non_finite"] = what;
  const std::string checkpoint =
      s.checkpoint_step >= 0
          ? fmt::format("The last good checkpoint is '{}' (step {}): lra run --resume {} continues from it",
                        checkpoint_path_, s.checkpoint_step, checkpoint_path_)
          : std::string("No checkpoint was written before it (one is written at every evaluation, eval_frequency)");
  throw Error(fmt::format("{}; lower learning_rate (--lr), add grad_clip_norm (--set grad_clip_norm=1.0) or check "
                          "the data. {}",
                          message, checkpoint));
}

double Trainer::train_step(EpochSampler& sampler, double lr) {
  State& s = *st_;
  Timer t;
  const int N = world_.size();
  const Batch whole = make_batch(s.data.train, sampler.batch(s.step, cfg_.batch_size), cfg_.model.max_length);
  Batch share;  // this rank's examples of the global batch (N > 1)
  if (N > 1)
    share = slice_batch(whole, static_cast<int>(share_begin(whole.B, N, world_.rank())),
                        static_cast<int>(share_begin(whole.B, N, world_.rank() + 1)));
  const Batch& b = N > 1 ? share : whole;
  // Its weight: its share of the global batch, so the summed gradient is the global batch's mean's.
  const double weight = static_cast<double>(b.B) / static_cast<double>(whole.B);
  double loss = 0.0;
  std::string error;
  try {
    s.model->zero_grads();
    if (b.B > 0) {
      s.model->load_batch(b);
      loss = s.model->forward(true, cfg_.seed, s.step);
      if (std::isfinite(loss)) s.model->backward(cfg_.seed, s.step, N > 1 ? weight : 1.0);
    }
  } catch (const std::exception& e) {
    if (N == 1) throw;
    error = e.what();
  }
  Timer comm;
  int64_t signal = interrupt_signal();
  if (N > 1) {
    s.be->synchronize();
    comm.reset();
    agree_on(error);
    // The global batch's mean loss, and the first signal any rank received.
    loss *= weight;
    world_.allreduce_sum(&loss, 1);
    world_.allreduce_max(&signal, 1);
  }
  if (!std::isfinite(loss))
    stop_non_finite({{"what", "loss"}, {"value", number_text(loss)}},
                    fmt::format("the training loss became {} at step {} (learning rate {:.3g})", number_text(loss),
                                s.step, lr));
  if (N > 1) {
    s.be->allreduce_sum(s.model->grad_block(), s.num_params, world_);
    s.comm_ms.push_back(comm.ms());
  }
  const double grad_norm =
      s.opt->step(s.model->param_block(), s.model->grad_block(), lr, s.step + 1, cfg_.grad_clip_norm);
  if (!std::isfinite(grad_norm)) {
    std::vector<float> grads(static_cast<size_t>(s.num_params));
    s.be->download(grads.data(), s.model->grad_block(), sizeof(float) * grads.size());
    const std::optional<NonFiniteGrad> bad = find_non_finite_grad(s.model->params(), grads);
    nlohmann::json what = {{"what", "gradient"}, {"grad_norm", number_text(grad_norm)}, {"loss", loss}};
    std::string where = "every element is finite: their sum of squares overflowed";
    if (bad) {
      what.update({{"parameter", bad->parameter}, {"layer", bad->layer}, {"index", bad->index},
                   {"value", number_text(bad->value)}, {"tensors", bad->tensors}});
      where = fmt::format("the first parameter the backward pass left non-finite is {} (layer {}, element {} is {}; "
                          "{} of {} tensors hold one)",
                          bad->parameter, bad->layer, bad->index, number_text(bad->value), bad->tensors,
                          s.model->params().size());
    }
    stop_non_finite(what, fmt::format("the gradient norm became {} at step {} (loss {:.4g}, learning rate {:.3g}): "
                                      "{}. The update was not applied",
                                      number_text(grad_norm), s.step, loss, lr, where));
  }
  s.be->synchronize();
  const double ms = t.ms();
  s.step_ms.push_back(ms);
  s.train_seconds += ms / 1e3;
  s.tokens_seen += whole.num_tokens();
  s.examples_seen += whole.B;
  s.interval_loss += loss;
  ++s.interval_steps;
  ++s.step;
  s.signal = static_cast<int>(signal);
  return loss;
}

EvalResult Trainer::evaluate(const Split& split, int64_t last_step) {
  State& s = *st_;
  EvalResult r;
  if (split.size() == 0) return r;
  EvalSums mine;
  together([&] { mine = s.evaluate_share(split, s.local_batch, cfg_.model.max_length, cfg_.seed, last_step, world_); });
  double sums[2] = {mine.correct, mine.loss};
  world_.allreduce_sum(sums, 2);  // after together(): a rank that failed never reaches it alone
  r.accuracy = sums[0] / static_cast<double>(split.size());
  r.loss = sums[1] / static_cast<double>(split.size());
  return r;
}

void Trainer::evaluate_val(double lr) {
  State& s = *st_;
  const EvalResult val = evaluate(s.data.val, s.step - 1);
  if (world_.size() > 1) {  // every rank applied the same steps: their parameters must agree bit for bit
    std::vector<float> p(static_cast<size_t>(s.num_params));
    s.be->download(p.data(), s.model->param_block(), sizeof(float) * p.size());
    Fnv1a64 h;
    add_all(h, p);
    check_same_on_all_ranks(h.h,
                            fmt::format("parameters after step {}: the all-reduce left the ranks with different "
                                        "gradients; report this with the MPI library and world size",
                                        s.step));
  }
  s.last_val = val.accuracy;
  if (val.accuracy > s.best_val) {
    s.best_val = val.accuracy;
    s.best_step = s.step;
  }
  const double mean_loss = s.interval_loss / static_cast<double>(s.interval_steps);
  s.curve.push_back({{"step", s.step},
                     {"loss", mean_loss},
                     {"lr", lr},
                     {"val_accuracy", val.accuracy},
                     {"val_loss", val.loss},
                     {"wall_seconds", s.wall_seconds()}});
  record_["curve"] = s.curve;
  if (opt_.progress && !stderr_is_terminal())
    std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.3e  val_accuracy %.4f  val_loss %.4f  %.2f step/s\n",
                 static_cast<long long>(s.step), static_cast<long long>(cfg_.num_train_steps), mean_loss, lr,
                 val.accuracy, val.loss, s.steps_per_sec());
  s.interval_loss = 0.0;
  s.interval_steps = 0;
}

void Trainer::draw_progress(double loss, double lr) const {
  const State& s = *st_;
  const double sps = s.steps_per_sec();
  const double eta = sps > 0 ? static_cast<double>(cfg_.num_train_steps - s.step) / sps : -1.0;
  const int width = 24;
  const int filled = static_cast<int>(width * s.step / cfg_.num_train_steps);
  std::fprintf(stderr, "\r[%s%s] %lld/%lld  loss %.4f  lr %.2e  val %s  %.2f step/s  ETA %s   ",
               std::string(static_cast<size_t>(filled), '#').c_str(),
               std::string(static_cast<size_t>(width - filled), '.').c_str(), static_cast<long long>(s.step),
               static_cast<long long>(cfg_.num_train_steps), loss, lr,
               s.last_val < 0 ? "  -  " : fmt::format("{:.2f}%", 100 * s.last_val).c_str(), sps,
               format_duration(eta).c_str());
  std::fflush(stderr);
}

void Trainer::train_steps() {
  State& s = *st_;
  EpochSampler sampler(s.data.train.size(), cfg_.seed);
  const bool tty = opt_.progress && stderr_is_terminal();
  Timer since_draw;
  while (s.step < cfg_.num_train_steps) {
    const double lr = (*s.lr_at)(s.step);
    const double loss = train_step(sampler, lr);
    const bool eval_now = s.step % cfg_.eval_frequency == 0 || s.step == cfg_.num_train_steps;
    if (eval_now) {
      evaluate_val(lr);
      if (s.step < cfg_.num_train_steps) save_checkpoint_now();
    }
    if (tty && (eval_now || since_draw.seconds() > 0.2)) {
      draw_progress(loss, lr);
      since_draw.reset();
    }
    if (s.step < cfg_.num_train_steps && (s.signal != 0 || (opt_.stop_after > 0 && s.step >= opt_.stop_after))) {
      save_checkpoint_now();
      s.stopped_early = true;
      break;
    }
  }
  if (tty) std::fprintf(stderr, "\n");
}

void Trainer::record_speed_and_memory() {
  const State& s = *st_;
  record_["speed"] = {{"steps_per_sec", s.steps_per_sec()},
                      {"examples_per_sec", s.per_second(static_cast<double>(s.examples_seen))},
                      {"tokens_per_sec", s.per_second(static_cast<double>(s.tokens_seen))},
                      {"ms_per_step_median", percentile(s.step_ms, 0.5)},
                      {"ms_per_step_p90", percentile(s.step_ms, 0.9)},
                      {"steps_timed", s.step_ms.size()}};
  const MemoryReport mem = s.model->memory();
  record_["memory"] = {{"arena_memory", s.be->allocator().where()},
                       {"peak_arena_bytes", mem.total() + s.opt->bytes()},
                       {"params_bytes", mem.params},
                       {"grads_bytes", mem.grads},
                       {"optimizer_bytes", s.opt->bytes()},
                       {"activations_bytes", mem.activations},
                       {"scratch_bytes", mem.scratch},
                       {"peak_rss_bytes", peak_rss_bytes()}};
  record_["metrics"] = {{"val_accuracy", std::max(s.last_val, 0.0)},
                        {"test_accuracy", nullptr},
                        {"test_loss", nullptr},
                        {"best_val_accuracy", std::max(s.best_val, 0.0)},
                        {"best_step", s.best_step},
                        {"steps_done", s.step}};
  if (world_.size() > 1) {
    double comm_total = 0.0;
    for (double v : s.comm_ms) comm_total += v;
    record_["speed"]["comm_ms_per_step_median"] = percentile(s.comm_ms, 0.5);
    // Each rank's view: its device and threads, its share of a batch and of its step time in collectives.
    const nlohmann::json mine = {
        {"rank", world_.rank()},
        {"host", host_name()},
        {"device", record_["env"].contains("device") ? record_["env"]["device"] : nlohmann::json(cfg_.device)},
        {"threads", s.threads},
        {"examples_per_step", share_size(cfg_.batch_size, world_.size(), world_.rank())},
        {"ms_per_step_median", percentile(s.step_ms, 0.5)},
        {"comm_ms_per_step_median", percentile(s.comm_ms, 0.5)},
        {"comm_share", s.train_seconds > 0 ? comm_total / 1e3 / s.train_seconds : 0.0},
        {"peak_rss_bytes", peak_rss_bytes()}};
    nlohmann::json ranks = nlohmann::json::array();
    for (const std::string& r : gather_strings(world_, mine.dump())) ranks.push_back(nlohmann::json::parse(r));
    record_["world"]["ranks"] = ranks;
    record_["speed"]["comm_share"] = mine["comm_share"];
  }
}

void Trainer::finish_interrupted() {
  const State& s = *st_;
  record_["status"] = "interrupted";
  record_["interrupted_by"] = s.signal != 0 ? signal_name(s.signal) : "--stop-after";
  record_["checkpoint"] = checkpoint_path_;
  record_["wall_seconds"] = s.wall_seconds();
  record_["ended_at"] = now_iso8601();
  if (opt_.progress)
    std::fprintf(stderr, "stopped after step %lld; continue with: lra run --resume %s\n",
                 static_cast<long long>(s.step), checkpoint_path_.c_str());
}

void Trainer::finish_with_test() {
  State& s = *st_;
  const EvalResult test = evaluate(s.data.test, std::max<int64_t>(s.step - 1, 0));
  record_["metrics"]["test_accuracy"] = test.accuracy;
  record_["metrics"]["test_loss"] = test.loss;
  record_["memory"]["peak_rss_bytes"] = peak_rss_bytes();
  record_["status"] = "ok";
  record_["wall_seconds"] = s.wall_seconds();
  record_["ended_at"] = now_iso8601();
  if (opt_.progress)
    std::fprintf(stderr, "test accuracy %.2f%%  (val %.2f%%, best val %.2f%% at step %lld)  %.2f step/s  %s\n",
                 100 * test.accuracy, 100 * std::max(s.last_val, 0.0), 100 * std::max(s.best_val, 0.0),
                 static_cast<long long>(s.best_step), s.steps_per_sec(), format_duration(s.wall_seconds()).c_str());
  if (!opt_.keep_checkpoint && world_.rank() == 0) std::remove(checkpoint_path_.c_str());
}

}  // namespace lra
