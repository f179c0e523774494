// One batch as the model takes it: packed (no padding rows), host side.
#pragma once

#include <cstdint>
#include <vector>

namespace lra {

struct Batch {
  int B = 0;
  int docs = 1;                    // documents per example: 2 for the dual encoder's pairs
  int L_pad = 0;                   // the padded length this batch stands for (the task's max_length)
  std::vector<int32_t> tokens;     // the real tokens of all documents, back to back
  // B * docs + 1: document s owns tokens[offsets[s] .. offsets[s+1]). With pairs, documents 0..B-1 are
  // the examples' first documents and B..2B-1 their second ones, in the same order.
  std::vector<int32_t> offsets;
  std::vector<uint8_t> key_mask;   // per token, 1 = attend; empty = every token is real
  std::vector<int32_t> labels;     // B
  int64_t num_tokens() const { return offsets.empty() ? 0 : offsets.back(); }
};

}  // namespace lra
