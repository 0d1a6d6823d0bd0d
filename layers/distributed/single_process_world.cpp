// world() where xgrad is built without MPI: always the single process, also under mpirun, where
// each process then runs alone (launched_by_mpirun() tells a caller that wants to refuse that).
#include "layers/distributed/communicator.hpp"

namespace xgrad {

std::shared_ptr<Communicator> world() { return single_process(); }

bool built_with_mpi() { return false; }

}  // namespace xgrad
