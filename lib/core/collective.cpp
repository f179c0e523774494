#include "core/collective.h"

#include <cstdlib>

namespace lra {

namespace {

class Solo final : public Collective {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  std::string name() const override { return "none"; }
  void allreduce_sum(float*, int64_t) override {}
  void allreduce_sum(double*, int64_t) override {}
  void allreduce_max(int64_t*, int64_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

// The environment variable's value when it is a whole number >= at_least; -1 otherwise (unset, empty,
// not a number).
long env_number(const char* name, long at_least) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end != v && *end == '\0' && n >= at_least ? n : -1;
}

}  // namespace

int launched_ranks(std::string* variable) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"})
    if (const long n = env_number(name, 1); n > 0) {
      if (variable != nullptr) *variable = name;
      return static_cast<int>(n);
    }
  if (variable != nullptr) variable->clear();
  return 1;
}

int launcher_local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"})
    if (const long r = env_number(name, 0); r >= 0) return static_cast<int>(r);
  return 0;
}

Collective& solo() {
  static Solo world;
  return world;
}

std::string broadcast_string(Collective& c, const std::string& s, int from) {
  if (c.size() == 1) return s;
  uint64_t n = s.size();
  c.broadcast(&n, sizeof n, from);
  std::string out = c.rank() == from ? s : std::string(n, '\0');
  if (n > 0) c.broadcast(out.data(), n, from);
  return out;
}

std::vector<std::string> gather_strings(Collective& c, const std::string& s) {
  std::vector<std::string> all;
  for (int r = 0; r < c.size(); ++r) all.push_back(broadcast_string(c, s, r));
  return all;
}

}  // namespace lra
