#include "dist/world.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <limits>

#include "core/check.h"

#ifdef LRA_WITH_MPI
#include <mpi.h>
#endif

namespace lra {

#ifdef LRA_WITH_MPI

namespace {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  LRA_FAIL("{} failed: {}", what, std::string(msg, static_cast<size_t>(len)));
}

// f(offset, count) over n elements in pieces MPI's int counts can hold.
template <class F>
void in_pieces(int64_t n, F&& f) {
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  for (int64_t i = 0; i < n; i += kMax) f(i, static_cast<int>(std::min(kMax, n - i)));
}

class MpiWorld final : public Collective {
 public:
  MpiWorld() {
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      std::atexit([] {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) MPI_Finalize();
      });
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<size_t>(len));
    v = v.substr(0, v.find_first_of(",\n"));
    name_ = "MPI (" + v + ")";
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string name() const override { return name_; }
  void allreduce_sum(float* x, int64_t n) override {
    in_pieces(n, [&](int64_t i, int c) {
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    });
  }
  void allreduce_sum(double* x, int64_t n) override {
    in_pieces(n, [&](int64_t i, int c) {
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    });
  }
  void allreduce_max(int64_t* x, int64_t n) override {
    in_pieces(n, [&](int64_t i, int c) {
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    });
  }
  void broadcast(void* data, size_t bytes, int root) override {
    in_pieces(static_cast<int64_t>(bytes), [&](int64_t i, int c) {
      check_mpi(MPI_Bcast(static_cast<char*>(data) + i, c, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    });
  }
  void barrier() override {
    MPI_Request req;
    check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, &req), "MPI_Ibarrier");
    for (int done = 0;;) {
      check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
      const timespec pause{0, 1000000};  // 1 ms
      nanosleep(&pause, nullptr);
    }
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string name_;
};

}  // namespace

Collective& world() {
  std::string variable;
  const int n = launched_ranks(&variable);
  if (variable.empty() || (n == 1 && variable == "SLURM_STEP_NUM_TASKS")) return solo();
  static MpiWorld mpi;
  LRA_CHECK(mpi.size() == n,
            "{}={} says {} processes were started, but MPI sees {}: the launcher and this binary's MPI do not "
            "match (with srun, pass --mpi=pmix or start the job with mpirun)",
            variable, n, n, mpi.size());
  return mpi;
}

#else

Collective& world() {
  std::string variable;
  const int n = launched_ranks(&variable);
  LRA_CHECK(n == 1,
            "this lra was built without MPI, but it was started as one of {} processes ({}={}): each would run "
            "the whole job alone. Install Open MPI (scripts/setup.sh installs libopenmpi-dev) and rebuild with "
            "-DLRA_MPI=ON, or start one process",
            n, variable, n);
  return solo();
}

#endif

}  // namespace lra
