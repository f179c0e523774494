// The caches of parsed and generated data, read back on every later run: tasks/common/cache's
// cache::read (Text, Retrieval, Image) and Pathfinder's read_cache. Both must refuse a damaged file with
// a reason, never trust its sizes.
#include "fuzz/fuzz_util.h"
#include "tasks/common/cache.h"
#include "tasks/pathfinder/pathfinder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lra;
  const std::string path = fuzz::write(fuzz::scratch() / "data.lracache", data, size);
  fuzz::expect_error([&] {
    const cache::ReadResult r = cache::read(path, fuzz::kCacheKey);
    fuzz::require(r.status != cache::Status::Missing, "an existing file is never Missing");
    fuzz::require((r.status == cache::Status::Reused) == r.reason.empty(), "a file not reused says why");
    for (const auto& [name, s] : r.entry.splits)
      fuzz::require(s.docs >= 1 && s.offsets.size() == s.size() * static_cast<size_t>(s.docs) + 1 &&
                        s.offsets.back() == s.tokens.size(),
                    "a reused cache holds consistent splits");
  });
  fuzz::expect_error([&] {
    pathfinder::Dataset d;
    std::string reason, checksum;
    const pathfinder::Params p = pathfinder::params_for(fuzz::kPathfinderResolution, fuzz::kPathfinderContourLength);
    const int64_t* n = fuzz::kPathfinderSplits;
    if (pathfinder::read_cache(path, fuzz::kPathfinderSeed, p, {n[0], n[1], n[2]}, d, reason, checksum)) {
      fuzz::require(static_cast<int64_t>(d.train.size()) == n[0] && static_cast<int64_t>(d.val.size()) == n[1] &&
                        static_cast<int64_t>(d.test.size()) == n[2] && !checksum.empty(),
                    "read_cache returns the sizes asked for");
    } else {
      fuzz::require(!reason.empty(), "read_cache says why it refuses a file");
    }
  });
  return 0;
}
