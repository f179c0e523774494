// `lra data show TASK`: one example as the model sees it (its tokens, decoded to text or drawn as an
// image), its label and the file and line it was read from, so a reader can be checked against the
// files by eye.
#include "cmd_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/files.h"
#include "tasks/pathfinder/pathfinder.h"
#include "tasks/task.h"
#include "train/config.h"

namespace lra {

void setup_data_show(CLI::App& data, DataShowOptions& o) {
  CLI::App* show = data.add_subcommand(
      "show", "print one example as the model sees it: its tokens (decoded to text, or drawn as an image), its "
              "label and the file and line it came from");
  show->add_option("task", o.task, "the task")->required()->check(CLI::IsMember(task_names()));
  show->add_option("--split", o.split, "train, val or test")
      ->check(CLI::IsMember({"train", "val", "test"}))
      ->capture_default_str();
  show->add_option("--index", o.index, "the example's index in the split (0-based)")->capture_default_str();
  show->add_option("--data-dir", o.data_dir, "folder with the official LRA files (as `lra run --data-dir`)")
      ->envname("LRA_DATA_DIR");
  show->add_option("--cache-dir", o.cache_dir, "where generated data is kept (as `lra run --cache-dir`)");
  show->add_option("--preset", o.preset, "the preset whose data to load, as `lra run --preset`")->capture_default_str();
  show->add_option("--set", o.sets, "config key=value as for `lra run` (max_length, n_test, a task's options, "
                                    "...); repeatable")
      ->type_name("KEY=VALUE");
  show->add_flag("--ids", o.all_ids, "print every token id (default: the first 64)");
  show->add_option("--png", o.png, "image tasks: also write the image to this PNG file")->type_name("FILE");
  show->add_flag("--json", o.json, "print JSON instead of text");
}

namespace {

// An image as text, one character per pixel from dark to light, at most 64 pixels wide (larger images
// are averaged over square blocks); each pixel is two characters wide so the picture keeps its shape.
std::string ascii_image(const DocumentView& v) {
  static constexpr char kRamp[] = " .:-=+*#%@";
  const int block = std::max(1, (v.width + 63) / 64);
  std::string out;
  for (int y = 0; y < v.height; y += block) {
    out += "  ";
    for (int x = 0; x < v.width; x += block) {
      int sum = 0, count = 0;
      for (int dy = 0; dy < block && y + dy < v.height; ++dy)
        for (int dx = 0; dx < block && x + dx < v.width; ++dx, ++count)
          sum += v.pixels[static_cast<size_t>(y + dy) * static_cast<size_t>(v.width) + static_cast<size_t>(x + dx)];
      const char c = kRamp[sum * 10 / (256 * std::max(count, 1))];
      out += c;
      out += c;
    }
    out += '\n';
  }
  if (block > 1) out += fmt::format("  ({}x{} pixels, each character averages {}x{})\n", v.width, v.height, block, block);
  return out;
}

}  // namespace

int run_data_show(const DataShowOptions& o) {
  const RunConfig cfg = resolve_config(o.task, "softmax", o.preset, "", o.sets);
  const Task& task = find_task(o.task);
  const TaskData data = task.load(data_options(cfg, o.data_dir, o.cache_dir, true));
  const Split& split = o.split == "train" ? data.train : o.split == "val" ? data.val : data.test;
  LRA_CHECK(split.size() > 0, "the {} split of {} is empty", o.split, o.task);
  LRA_CHECK(o.index < split.size(), "--index {} is past the end of the {} split of {}, which holds {} examples "
            "(0..{})", o.index, o.split, o.task, split.size(), split.size() - 1);
  const std::string origin = split.origins.describe(o.index);
  nlohmann::json j = {{"task", o.task},
                      {"split", o.split},
                      {"index", o.index},
                      {"examples", split.size()},
                      {"label", split.labels[o.index]},
                      {"origin", origin.empty() ? nlohmann::json(nullptr) : nlohmann::json(origin)},
                      {"max_length", cfg.model.max_length},
                      {"zero_is_padding", split.zero_is_padding},
                      {"dataset", data.info.to_json(data.train.size(), data.val.size(), data.test.size())},
                      {"documents", nlohmann::json::array()}};
  std::vector<DocumentView> views;
  for (int k = 0; k < split.docs; ++k) {
    const size_t d = o.index * static_cast<size_t>(split.docs) + static_cast<size_t>(k);
    const uint16_t* ids = split.tokens.data() + split.offsets[d];
    const auto n = static_cast<size_t>(split.length(d));
    views.push_back(task.view(ids, n));
    nlohmann::json doc = {{"tokens", n}, {"ids", std::vector<uint16_t>(ids, ids + n)}};
    if (views.back().width > 0)
      doc["image"] = {{"width", views.back().width}, {"height", views.back().height}};
    else
      doc["text"] = views.back().text;
    j["documents"].push_back(std::move(doc));
  }
  if (!o.png.empty()) {
    LRA_CHECK(views.front().width > 0, "--png: {} is not an image task; its examples are text", o.task);
    write_file_atomic(o.png, pathfinder::encode_png(views.front().pixels.data(), views.front().width,
                                                    views.front().height));
    j["png"] = o.png;
  }
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  fmt::print("{}, {} split, example {} of {}; data: {}\n", o.task, o.split, o.index, split.size(),
             data.info.source == "generated" ? fmt::format("generated (seed {})", data.info.generator_seed)
                                             : data.info.source + " in " + data.info.path);
  fmt::print("from:    {}\n", origin.empty() ? "(not recorded by this task's loader)" : origin);
  fmt::print("label:   {}\n", split.labels[o.index]);
  for (size_t k = 0; k < views.size(); ++k) {
    const nlohmann::json& doc = j["documents"][k];
    const auto& ids = doc["ids"];
    const size_t n = ids.size();
    const std::string which = views.size() > 1 ? fmt::format("document {}: ", k + 1) : "";
    fmt::print("{}{} tokens (max_length {}{})\n", which, n, cfg.model.max_length,
               split.zero_is_padding ? "; id 0 is padding, hidden from attention" : "");
    if (views[k].width > 0)
      fmt::print("image:   {}x{}\n{}", views[k].width, views[k].height, ascii_image(views[k]));
    else
      fmt::print("text:    {}\n", views[k].text);
    const size_t shown = o.all_ids ? n : std::min<size_t>(n, 64);
    std::string list;
    for (size_t i = 0; i < shown; ++i) list += fmt::format("{}{}", i ? " " : "", ids[i].get<int>());
    fmt::print("ids:     {}{}\n", list, shown < n ? fmt::format(" ... ({} more; --ids prints all)", n - shown) : "");
  }
  if (!o.png.empty()) fmt::print("png:     {}\n", o.png);
  return 0;
}

}  // namespace lra
