// The processes of one run and what they exchange. A data-parallel run is N processes (ranks) started
// by a launcher (mpirun, srun); they see each other only through a Collective. The interface lives here
// so that every layer can take one (the trainer, the GPU backend's NCCL path) without knowing MPI; the
// MPI implementation is lib/dist. One process alone is solo(): every collective is then the identity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lra {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The rank among the processes of this machine (which GPU a rank takes).
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;  // ranks on this machine
  // "MPI (Open MPI v4.1.4)", or "none" for one process.
  virtual std::string name() const = 0;
  // In place, on host memory; every rank ends with the same values. The order of summation is fixed
  // by the world's size, so a run is reproducible at a given world size.
  virtual void allreduce_sum(float* x, int64_t n) = 0;
  virtual void allreduce_sum(double* x, int64_t n) = 0;
  virtual void allreduce_max(int64_t* x, int64_t n) = 0;
  // Root's bytes to every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Waits for every rank; a rank that waits sleeps between polls, so it leaves its core to the others.
  virtual void barrier() = 0;
  // Ends every rank now, with this exit status (for a failure the ranks cannot agree on).
  [[noreturn]] virtual void abort(int code) = 0;
};

// The world of one process.
Collective& solo();

// How many processes the launcher says it started (1 without a launcher), and the variable that says
// so ("" without one): OMPI_COMM_WORLD_SIZE (Open MPI's mpirun), PMI_SIZE / PMIX_SIZE (MPICH, srun
// --mpi=pmi2|pmix), SLURM_STEP_NUM_TASKS (srun).
int launched_ranks(std::string* variable = nullptr);

// This process's rank among those the launcher started on this machine, from its environment
// (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID, PMI_LOCAL_RANK); 0 without a launcher. A
// device's backend takes its GPU by it before any collective exists.
int launcher_local_rank();

// Rank `from`'s string, on every rank.
std::string broadcast_string(Collective& c, const std::string& s, int from);
// Every rank's string, in rank order, on every rank.
std::vector<std::string> gather_strings(Collective& c, const std::string& s);

// Cuts n items into `parts` contiguous shares that differ in size by at most one: share r is
// [share_begin(n, parts, r), share_begin(n, parts, r + 1)).
inline int64_t share_begin(int64_t n, int parts, int r) { return n * r / parts; }
inline int64_t share_size(int64_t n, int parts, int r) { return share_begin(n, parts, r + 1) - share_begin(n, parts, r); }

}  // namespace lra
