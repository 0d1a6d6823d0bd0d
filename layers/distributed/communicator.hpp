// The processes of a data-parallel job as the library sees them: the few collectives that
// SyncBatchNorm and data-parallel training need, behind one small interface, so that no layer or
// trainer includes MPI and the library builds without it. Two implementations: a single process
// (here) and MPI's world (mpi_world.cpp, built where MPI is found).
//
// Every collective is called by every rank, in the same order, with the same counts. Sums are
// added in rank order 0, 1, ..., W - 1 on every rank, after an all-gather, rather than in whatever
// order a reduction algorithm picks: every rank holds the same bits, and a run with W ranks
// repeats its bits, whichever rank arrives first. The price is W times the traffic of a
// reduce-scatter, which is nothing beside a step for the few ranks of one machine.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace xgrad {

// A collective started and not yet finished (Communicator::start_all_gather).
class PendingCollective {
public:
    virtual ~PendingCollective() = default;
    // Moves it on as far as it can without blocking; whether it has finished.
    virtual bool test() = 0;
    // Blocks until it has finished.
    virtual void wait() = 0;
};

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // out[r·n + i] = local[i] of rank r, on every rank, n = local.size() (the same on every rank);
    // out.size() = size()·n.
    void all_gather(std::span<const double> local, std::span<double> out) {
        all_gather_bytes(std::as_bytes(local), std::as_writable_bytes(out));
    }
    virtual void all_gather_bytes(std::span<const std::byte> local, std::span<std::byte> out) = 0;
    // all_gather without waiting for it (MPI_Iallgather), so that computation can go on meanwhile:
    // `local` and `out` must stay as they are until the returned collective has finished, which
    // its destructor waits for. Collectives, started and blocking alike, are matched across ranks
    // in the order each rank calls them.
    std::unique_ptr<PendingCollective> start_all_gather(std::span<const float> local, std::span<float> out) {
        return start_all_gather_bytes(std::as_bytes(local), std::as_writable_bytes(out));
    }
    std::unique_ptr<PendingCollective> start_all_gather(std::span<const double> local, std::span<double> out) {
        return start_all_gather_bytes(std::as_bytes(local), std::as_writable_bytes(out));
    }
    virtual std::unique_ptr<PendingCollective> start_all_gather_bytes(std::span<const std::byte> local,
                                                                      std::span<std::byte> out) = 0;
    // root's bytes to every rank.
    virtual void broadcast(std::span<std::byte> data, int root) = 0;
    virtual void barrier() = 0;
    // The same ranks with collectives of their own: matched only among themselves, never against
    // this communicator's (MPI_Comm_dup), so that two streams of collectives (a data-parallel
    // reducer's and SyncBatchNorm's) need not interleave alike on every rank. Collective.
    virtual std::shared_ptr<Communicator> duplicate() = 0;
    // Ends every rank of the job with `code`, for an error one rank met alone: the others may be
    // waiting in a collective it will never join (MPI_Abort; a single process exits).
    [[noreturn]] virtual void abort(int code) = 0;
    // "rank 1 of 2", for messages.
    std::string describe() const;
};

// values := the sum over ranks of every rank's values, added in rank order (see above).
void all_reduce_sum(Communicator& communicator, std::span<double> values);

// out[i] := the sum over r < ranks of values[r·stride + i], i < size: every rank's values as an
// all-gather lays them out, added in double in rank order whatever T (the same bits on every
// rank), then rounded to T. For float and double.
template <class T>
void sum_over_ranks(const T* values, std::size_t stride, std::size_t ranks, std::size_t size, T* out);

// The job of one process: rank 0 of 1; every collective returns what it was given.
std::shared_ptr<Communicator> single_process();

// This process's job: under mpirun, and where xgrad was built with MPI, every rank of
// MPI_COMM_WORLD (MPI initialized on the first call unless the program did, and then finalized at
// exit); otherwise single_process(). The same object on every call.
std::shared_ptr<Communicator> world();

// Whether world() can span processes: xgrad was built with MPI.
bool built_with_mpi();

// Whether this process was started by mpirun (or another MPI launcher): its environment says so.
// A plain run never initializes MPI.
bool launched_by_mpirun();

}  // namespace xgrad
