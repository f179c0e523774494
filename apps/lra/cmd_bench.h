// `lra bench train`: time full training steps (forward, backward, AdamW) on random tokens.
// `lra bench attn`: time one attention layer (qkv projection, attention, output projection), forward or
// forward + backward, per variant and sequence length, with its planned memory and its error against
// exact softmax attention; LRA-Table-2-shaped tables, JSON lines or a bench record.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/attn_bench.h"

namespace lra {

struct BenchTrainOptions {
  std::string attn = "softmax";
  std::string device = "cpu";
  int len = 1024;
  int batch = 8;
  int dim = 128;
  int heads = 4;
  int layers = 2;
  int mlp = 256;
  int threads = 0;
  int steps = 10;
  int warmup = 3;
  float dropout = 0.1f;
  float attn_dropout = 0.1f;
  std::vector<std::string> sets;
  uint64_t seed = 0;
  bool json = false;
  bool torch = false;  // also time bench/torch_reference.py on the same shapes and print the ratio
  bool breakdown = false;  // time each phase of the step (model/profile.h)
  std::string python = "python3";
};

// `lra bench attn`: what to measure (lib/bench) plus how to report it.
struct BenchAttnOptions : AttnBenchRequest {
  bool json = false;
  std::string out;  // bench record path, empty = none
};

void setup_bench(CLI::App& bench, BenchTrainOptions& train_opt, BenchAttnOptions& attn_opt);
int run_bench_train(const BenchTrainOptions& opt);
int run_bench_attn(const BenchAttnOptions& opt);

}  // namespace lra
