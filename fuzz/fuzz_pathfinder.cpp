// The released Pathfinder layout: the input split into metadata/0.npy and the PNGs imgs/0/sample_<i>.png
// it may name, for count_released and read_released (metadata parsing, LRA's 80/10/10 split, decode_png
// through libpng); and each PNG part for decode_png from memory.
#include "fuzz/fuzz_util.h"
#include "tasks/pathfinder/pathfinder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  constexpr int kResolution = fuzz::kPathfinderResolution;
  const auto dir = fuzz::scratch() / "curv_contour_length_14";
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 9);
  fuzz::write(dir / "metadata" / "0.npy", parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) {
    fuzz::write(dir / "imgs" / "0" / ("sample_" + std::to_string(i - 1) + ".png"), parts[i]);
    fuzz::expect_error([&] {
      const std::vector<uint8_t> px = pathfinder::decode_png(parts[i], "sample.png", kResolution, kResolution);
      fuzz::require(px.size() == kResolution * kResolution, "decode_png returns width x height pixels");
    });
  }
  pathfinder::Params p;
  p.resolution = kResolution;
  fuzz::expect_error([&] {
    const pathfinder::ReleasedCounts c = pathfinder::count_released(dir.string(), 0, 0, 0);
    std::vector<std::string> metadata;
    const pathfinder::Dataset d = pathfinder::read_released(dir.string(), p, 0, 0, 0, metadata);
    fuzz::require(static_cast<int64_t>(d.train.size()) == c.train && static_cast<int64_t>(d.val.size()) == c.val &&
                      static_cast<int64_t>(d.test.size()) == c.test && c.train + c.val + c.test == c.total,
                  "read_released reads the images count_released counts");
    for (const pathfinder::ImageSet* s : {&d.train, &d.val, &d.test}) {
      fuzz::require(s->pixels.size() == s->size() * kResolution * kResolution && s->margins.size() == s->size(),
                    "an image set holds R x R pixels and a margin per label");
      for (int32_t label : s->labels) fuzz::require(label == 0 || label == 1, "labels are 0 or 1");
    }
  });
  fuzz::expect_error([&] {
    std::vector<std::string> metadata;
    const pathfinder::Dataset d = pathfinder::read_released(dir.string(), p, 1, 0, 0, metadata);
    fuzz::require(d.train.size() == 1, "read_released keeps the first n_train images");
  });
  return 0;
}
