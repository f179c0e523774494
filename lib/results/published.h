// The published tables as data (results/published/*.json): LRA Table 1 (accuracy), LRA Table 2 (speed and
// memory) and cosFormer's LRA row, every number with its paper, table, row and column, whether it has been
// checked against the paper (`verified`) and any caveat, so a report can print them beside ours and mark
// what is uncertain.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace lra {

struct PublishedValue {
  std::string paper, table, row, column;  // where it is printed
  std::string attn;                       // our variant name
  std::string task;                       // accuracy: a task name or "avg"
  std::string metric;                     // efficiency: "steps_per_sec" or "memory_gb"
  int length = 0;                         // efficiency: sequence length
  std::optional<double> value;            // empty when the paper prints a word (text)
  std::optional<double> relative;         // efficiency: the paper's bracket (speed relative to the Transformer)
  std::string text;                       // e.g. "FAIL"
  bool verified = true;                   // checked against the paper
  std::string note, caveat;
  std::string file;  // the JSON file it came from
};

struct PublishedFile {
  std::string path, kind, title, source;
  std::vector<std::string> notes;
};

struct Published {
  std::vector<PublishedFile> files;
  std::vector<PublishedValue> values;

  // nullptr when the paper has no such number.
  const PublishedValue* accuracy(const std::string& attn, const std::string& task) const;
  const PublishedValue* efficiency(const std::string& attn, const std::string& metric, int length) const;
  // The published row matched to a variant for accuracy ("LRA Table 1: Transformer"), empty when none.
  std::string accuracy_row(const std::string& attn) const;
  std::string efficiency_row(const std::string& attn) const;
};

// Reads every *.json in `dir`; a malformed file throws, naming it and the entry at fault.
Published load_published(const std::string& dir);

// The folder of published tables: `given` when not empty (it must exist), else results/published under
// the working folder, else under the source tree this binary was built from.
std::string find_published_dir(const std::string& given);

// A short label for a paper ("LRA", "cosFormer"): the text before its first " (".
std::string paper_short(const std::string& paper);

}  // namespace lra
