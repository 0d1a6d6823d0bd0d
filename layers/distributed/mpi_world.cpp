// world() where xgrad is built with MPI: MPI_COMM_WORLD when launched by mpirun. MPI's default
// error handler stays: a failed collective ends the whole job with MPI's message rather than
// leaving the other ranks waiting, and mpirun ends the job, naming the rank, when one exits
// early or nonzero.
// MPI's C interface only: OpenMPI's C++ bindings (deprecated since MPI 2.2) do not compile warning-free.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "layers/distributed/communicator.hpp"

namespace xgrad {

namespace {

int count_of(std::size_t n, const char* what) {
    if (n > static_cast<std::size_t>(INT_MAX)) {
        throw std::length_error(std::string(what) + ": " + std::to_string(n) + " bytes are more than MPI counts");
    }
    return static_cast<int>(n);
}

class MpiRequest final : public PendingCollective {
public:
    MpiRequest() = default;
    MpiRequest(const MpiRequest&) = delete;
    MpiRequest& operator=(const MpiRequest&) = delete;
    // Its buffers may go once it is dropped, so it is waited for then.
    ~MpiRequest() override { wait(); }
    bool test() override {
        int done = 0;
        MPI_Test(&request, &done, MPI_STATUS_IGNORE);  // MPI_REQUEST_NULL, once finished, tests done
        return done != 0;
    }
    void wait() override { MPI_Wait(&request, MPI_STATUS_IGNORE); }

    MPI_Request request = MPI_REQUEST_NULL;
};

// MPI itself: initialized unless the program did it, and then finalized once the last
// communicator that holds it is gone.
class MpiLibrary {
public:
    MpiLibrary() {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (initialized) return;  // a program that initialized MPI itself keeps it, and finalizes it
        int provided = 0;
        // Collectives come from one thread at a time (the training loop's), never from TBB's workers.
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
        owns_ = true;
        if (provided < MPI_THREAD_SERIALIZED) {
            MPI_Finalize();
            throw std::runtime_error("MPI: this MPI library does not allow calls from more than one thread "
                                     "(MPI_THREAD_SERIALIZED)");
        }
    }
    ~MpiLibrary() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owns_ && !finalized) MPI_Finalize();
    }
    MpiLibrary(const MpiLibrary&) = delete;
    MpiLibrary& operator=(const MpiLibrary&) = delete;

private:
    bool owns_ = false;
};

// The ranks of an MPI communicator: MPI_COMM_WORLD, or a duplicate of it that it frees.
class MpiCommunicator final : public Communicator {
public:
    MpiCommunicator(std::shared_ptr<MpiLibrary> library, MPI_Comm comm, bool owned)
        : library_(std::move(library)), comm_(comm), owned_(owned) {
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
    }
    ~MpiCommunicator() override {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owned_ && !finalized) MPI_Comm_free(&comm_);
    }
    MpiCommunicator(const MpiCommunicator&) = delete;
    MpiCommunicator& operator=(const MpiCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void all_gather_bytes(std::span<const std::byte> local, std::span<std::byte> out) override {
        const int n = gather_count(local.size(), out.size(), "all_gather");
        MPI_Allgather(local.data(), n, MPI_BYTE, out.data(), n, MPI_BYTE, comm_);
    }
    std::unique_ptr<PendingCollective> start_all_gather_bytes(std::span<const std::byte> local,
                                                              std::span<std::byte> out) override {
        const int n = gather_count(local.size(), out.size(), "start_all_gather");
        auto pending = std::make_unique<MpiRequest>();
        MPI_Iallgather(local.data(), n, MPI_BYTE, out.data(), n, MPI_BYTE, comm_, &pending->request);
        return pending;
    }
    void broadcast(std::span<std::byte> data, int root) override {
        MPI_Bcast(data.data(), count_of(data.size(), "broadcast"), MPI_BYTE, root, comm_);
    }
    void barrier() override { MPI_Barrier(comm_); }
    std::shared_ptr<Communicator> duplicate() override {
        MPI_Comm copy = MPI_COMM_NULL;
        MPI_Comm_dup(comm_, &copy);
        return std::make_shared<MpiCommunicator>(library_, copy, true);
    }
    [[noreturn]] void abort(int code) override {
        MPI_Abort(MPI_COMM_WORLD, code);  // every process of the job, whichever communicator met the error
        std::exit(code);                  // MPI_Abort does not return; the compiler cannot know it
    }

private:
    // An all-gather's count in bytes (MPI counts are ints: at most 2 GiB a rank), once its output
    // is checked to hold every rank's values.
    int gather_count(std::size_t local, std::size_t out, const char* what) const {
        if (out != local * static_cast<std::size_t>(size_)) {
            throw std::invalid_argument(std::string(what) + ": the output must hold every rank's values");
        }
        return count_of(local, what);
    }

    std::shared_ptr<MpiLibrary> library_;  // MPI stays up while a communicator needs it
    MPI_Comm comm_;
    bool owned_;
    int rank_ = 0;
    int size_ = 1;
};

}  // namespace

std::shared_ptr<Communicator> world() {
    static const std::shared_ptr<Communicator> job =
        launched_by_mpirun()
            ? std::shared_ptr<Communicator>(std::make_shared<MpiCommunicator>(std::make_shared<MpiLibrary>(), MPI_COMM_WORLD, false))
            : single_process();
    return job;
}

bool built_with_mpi() { return true; }

}  // namespace xgrad
