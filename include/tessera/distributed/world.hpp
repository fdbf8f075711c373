// distributed::make_world_communicator(): every rank of the job — MPI's when tessera was built with TESSERA_MPI,
// else the single-process stand-in — and have_mpi, which says which one this build has.
#pragma once

#include <cstdlib>
#include <memory>

#include "tessera/distributed/communicator.hpp"
#include "tessera/distributed/single_process.hpp"
#if defined(TESSERA_MPI)
#include "tessera/distributed/mpi.hpp"
#endif

namespace tessera::distributed {

// The number of processes an MPI launcher (Open MPI's mpirun, or a PMI launcher such as MPICH's mpiexec) started
// this job with, read from the environment it sets; 0 when the program was not started by one. A program may start
// MPI only when launched (a plain run then never touches MPI), and a build without MPI can see that it was launched
// as several ranks and refuse, instead of training N independent copies.
inline int launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') {
      const long size = std::strtol(value, nullptr, 10);
      if (size >= 1) return static_cast<int>(size);
    }
  }
  return 0;
}

// The two builds name their factory in different inline namespaces, so translation units compiled with and
// without TESSERA_MPI never hold two different definitions of one inline function (an ODR violation).
#if defined(TESSERA_MPI)
inline namespace with_mpi {
inline constexpr bool have_mpi = true;
// A program started without mpirun is MPI's singleton: one rank.
inline std::unique_ptr<Communicator> make_world_communicator(CommunicatorOptions options = {}) {
  return std::make_unique<MpiCommunicator>(options);
}
}  // namespace with_mpi
#else
inline namespace without_mpi {
inline constexpr bool have_mpi = false;
inline std::unique_ptr<Communicator> make_world_communicator(CommunicatorOptions = {}) {
  return std::make_unique<SingleProcessCommunicator>();
}
}  // namespace without_mpi
#endif

}  // namespace tessera::distributed
