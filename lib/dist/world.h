// The world this process runs in. Started by a launcher as one of N processes (mpirun, srun), it is
// MPI's world; alone, it is solo(). MPI is initialised on the first call and finalised at exit.
#pragma once

#include <string>

#include "core/collective.h"

namespace lra {

// Throws, naming the launcher's variable, when the launcher started several processes and this binary
// was built without MPI (each would run the whole job alone).
Collective& world();

}  // namespace lra
