// Checkpoints (*.ckpt): load_checkpoint_meta (what `lra run --resume` and `lra reproduce` read first),
// load_checkpoint (the tensors, checksummed), config_from_checkpoint (the run's config, resolved) and
// find_orphan_checkpoints (reproduce's scan of a records folder, which names and skips what it cannot
// read) and the grid plan that resumes the orphans it keeps.
#include "fuzz/fuzz_util.h"
#include "runner/reproduce.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const auto dir = fuzz::scratch();
  const std::string path = fuzz::write(dir / "run.ckpt", data, size);
  fuzz::expect_error([&] { load_checkpoint_meta(path); });
  fuzz::expect_error([&] {
    const Checkpoint c = load_checkpoint(path);
    fuzz::require(c.m.size() == c.params.size() && c.v.size() == c.params.size(),
                  "a checkpoint holds as many moments as parameters");
    fuzz::require(c.meta == load_checkpoint_meta(path), "load_checkpoint and load_checkpoint_meta agree");
  });
  fuzz::expect_error([&] { config_from_checkpoint(path); });
  const OrphanScan scan = find_orphan_checkpoints(dir.string(), RecordSet{});
  fuzz::require(scan.orphans.size() + scan.skipped.size() == 1, "the scan names the one checkpoint or skips it");
  GridActivity activity;
  activity.orphans = scan.orphans;
  GridRequest req;
  req.tasks = {"listops"};
  req.attns = {"softmax"};
  fuzz::expect_error([&] { plan_accuracy_grid(req, RecordSet{}, activity); });
  return 0;
}
