// Config files (`lra run --config FILE`): resolve_config for a few tasks, variants and presets, which
// layers the file over the task's defaults and the preset, checks every key against the config, the
// task's options and the variant's hyperparameters, and resolves the result. What it accepts must
// survive the record's round trip (RunConfig::to_json, then from_json, as a resumed run reads it), and a
// number the file sets must be the number the run gets.
#include "core/files.h"
#include "fuzz/fuzz_util.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const std::string path = fuzz::write(fuzz::scratch() / "config.json", data, size);
  const char* const runs[][3] = {{"listops", "softmax", "cpu"},
                                 {"text", "performer", "paper"},
                                 {"retrieval", "linformer", "cpu"},
                                 {"image", "bigbird", "paper"},
                                 {"pathfinder", "reformer", "cpu"}};
  for (const auto& run : runs)
    fuzz::expect_error([&] {
      const RunConfig c = resolve_config(run[0], run[1], run[2], path, {});
      const nlohmann::json j = c.to_json();
      fuzz::require(RunConfig::from_json(j).to_json() == j, "a resolved config survives its record's round trip");
      const nlohmann::json file = nlohmann::json::parse(read_file(path));
      for (auto it = file.begin(); it != file.end(); ++it)
        if (it->is_number() && j.contains(it.key()))
          fuzz::require(j[it.key()] == *it, "a number in the config file is the number the run gets");
    });
  return 0;
}
