// One batch as the model takes it: packed (no padding rows), host side.
#pragma once

#include <cstdint>
#include <vector>

namespace lra {

struct Batch {
  int B = 0;
  int L_pad = 0;                   // the padded length this batch stands for (the task's max_length)
  std::vector<int32_t> tokens;     // the real tokens of all examples, back to back
  std::vector<int32_t> offsets;    // B + 1: example b owns tokens[offsets[b] .. offsets[b+1])
  std::vector<uint8_t> key_mask;   // per token, 1 = attend; empty = every token is real
  std::vector<int32_t> labels;     // B
  int64_t num_tokens() const { return offsets.empty() ? 0 : offsets.back(); }
};

}  // namespace lra
