// `lra bench train`: time full training steps (forward, backward, AdamW) on random tokens.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

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
  std::string python = "python3";
};

void setup_bench(CLI::App& bench, BenchTrainOptions& train_opt);
int run_bench_train(const BenchTrainOptions& opt);

}  // namespace lra
