// distributed::make_world_communicator(): every rank of the job — MPI's when tessera was built with TESSERA_MPI,
// else the single-process stand-in — and have_mpi, which says which one this build has.
#pragma once

#include <memory>

#include "tessera/distributed/communicator.hpp"
#include "tessera/distributed/single_process.hpp"
#if defined(TESSERA_MPI)
#include "tessera/distributed/mpi.hpp"
#endif

namespace tessera::distributed {

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
