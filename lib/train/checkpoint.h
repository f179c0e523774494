// Checkpoints: everything a resumed run needs to end with exactly the numbers of the uninterrupted
// run: the parameters, both Adam moments and the trainer's state (step, curve, best so far), with the
// resolved config. Layout: "LRACKPT1", u64 JSON length, JSON, u64 n, n params, n m, n v (float32, little
// endian), u64 FNV-1a checksum of all preceding bytes. Written atomically.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lra {

struct Checkpoint {
  nlohmann::json meta;
  std::vector<float> params, m, v;
};

void save_checkpoint(const std::string& path, const nlohmann::json& meta, const float* params, const float* m,
                     const float* v, int64_t n);
// Throws naming the file when it is missing, truncated, corrupt or not a checkpoint.
Checkpoint load_checkpoint(const std::string& path);
// Only the metadata (config, step, ...), without reading the tensors; load_checkpoint verifies the rest.
nlohmann::json load_checkpoint_meta(const std::string& path);
// The folder a checkpoint lies in ("." for a bare file name): where a run resumed from it writes its record.
std::string checkpoint_folder(const std::string& path);

}  // namespace lra
