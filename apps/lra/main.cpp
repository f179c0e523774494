// lra: the Long-Range Arena harness. One subcommand per file (cmd_*.cpp); errors exit here.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cmd_bench.h"
#include "cmd_compare.h"
#include "cmd_data.h"
#include "cmd_list.h"
#include "cmd_report.h"
#include "cmd_reproduce.h"
#include "cmd_run.h"
#include "dist/world.h"

int main(int argc, char** argv) {
  CLI::App app{"lra: train and benchmark efficient attention on the Long-Range Arena"};
  app.require_subcommand(1);
  app.set_version_flag("--version", LRA_VERSION);
  bool debug = false;
  app.add_flag("--debug", debug,
               "errors also name the failed check and its source line (as LRA_DEBUG=1 does); give it before the "
               "command");

  lra::RunOptions run_opt;
  CLI::App* run = app.add_subcommand("run", "train a model on a task and write its run record (JSON)");
  lra::setup_run(*run, run_opt);

  lra::ListOptions list_opt;
  CLI::App* list = app.add_subcommand("list", "list the tasks or attention variants");
  lra::setup_list(*list, list_opt);

  lra::BenchTrainOptions bench_train_opt;
  lra::BenchAttnOptions bench_attn_opt;
  CLI::App* bench = app.add_subcommand(
      "bench", "benchmarks: `bench train` times training steps, `bench attn` one attention layer per variant");
  lra::setup_bench(*bench, bench_train_opt, bench_attn_opt);

  lra::DataStatusOptions data_status_opt;
  lra::DataFetchOptions data_fetch_opt;
  lra::DataGenerateOptions data_generate_opt;
  lra::DataShowOptions data_show_opt;
  CLI::App* data = app.add_subcommand(
      "data", "the tasks' data: `data status` shows what `lra run` would use, `data fetch` downloads the official "
              "files, `data generate` writes generated data in the released layout, `data show` prints one "
              "example with the file and line it came from");
  lra::setup_data(*data, data_status_opt, data_fetch_opt, data_generate_opt);
  lra::setup_data_show(*data, data_show_opt);

  lra::ReportOptions report_opt;
  CLI::App* report = app.add_subcommand(
      "report", "the LRA paper's tables from folders of records, published numbers beside ours (md, csv, latex, html)");
  lra::setup_report(*report, report_opt);

  lra::CompareOptions compare_opt;
  CLI::App* compare =
      app.add_subcommand("compare", "runs, or the variants of one task, side by side: accuracy, loss, speed, memory, "
                                    "config differences");
  lra::setup_compare(*compare, compare_opt);

  lra::ReproduceOptions reproduce_opt;
  CLI::App* reproduce = app.add_subcommand(
      "reproduce", "run the missing cells of an LRA table (resumable), then write the table beside the paper's");
  lra::setup_reproduce(*reproduce, reproduce_opt);

  CLI11_PARSE(app, argc, argv);
  if (debug) setenv("LRA_DEBUG", "1", 1);
  try {
    std::string launcher;
    const int ranks = lra::launched_ranks(&launcher);
    if (ranks > 1 && !run->parsed() && !bench->got_subcommand("train")) {
      std::fprintf(stderr,
                   "lra: only `lra run` and `lra bench train` span several processes; this command was started as "
                   "one of %d (%s): start it once, without mpirun or srun\n",
                   ranks, launcher.c_str());
      return 1;
    }
    if (run->parsed()) return lra::run_run(run_opt, *run);
    if (list->parsed()) return lra::run_list(list_opt);
    if (bench->got_subcommand("train")) return lra::run_bench_train(bench_train_opt);
    if (bench->got_subcommand("attn")) return lra::run_bench_attn(bench_attn_opt);
    if (data->got_subcommand("status")) return lra::run_data_status(data_status_opt);
    if (data->got_subcommand("fetch")) return lra::run_data_fetch(data_fetch_opt);
    if (data->got_subcommand("generate")) return lra::run_data_generate(data_generate_opt);
    if (data->got_subcommand("show")) return lra::run_data_show(data_show_opt);
    if (report->parsed()) return lra::run_report(report_opt);
    if (compare->parsed()) return lra::run_compare(compare_opt);
    if (reproduce->parsed()) return lra::run_reproduce(reproduce_opt, *reproduce);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lra: %s\n", e.what());
    return 1;
  }
  return 0;
}
