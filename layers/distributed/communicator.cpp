#include "layers/distributed/communicator.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace xgrad {

namespace {

// A collective that finished as it started.
class Finished final : public PendingCollective {
public:
    bool test() override { return true; }
    void wait() override {}
};

class SingleProcess final : public Communicator {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void all_gather_bytes(std::span<const std::byte> local, std::span<std::byte> out) override {
        if (out.size() != local.size()) throw std::invalid_argument("all_gather: the output must hold one rank's values");
        std::copy(local.begin(), local.end(), out.begin());
    }
    std::unique_ptr<PendingCollective> start_all_gather_bytes(std::span<const std::byte> local,
                                                              std::span<std::byte> out) override {
        all_gather_bytes(local, out);
        return std::make_unique<Finished>();
    }
    void broadcast(std::span<std::byte>, int root) override {
        if (root != 0) throw std::invalid_argument("broadcast: root " + std::to_string(root) + " of a single process");
    }
    void barrier() override {}
    std::shared_ptr<Communicator> duplicate() override { return single_process(); }
    [[noreturn]] void abort(int code) override { std::exit(code); }
};

}  // namespace

std::string Communicator::describe() const {
    return "rank " + std::to_string(rank()) + " of " + std::to_string(size());
}

template <class T>
void sum_over_ranks(const T* values, std::size_t stride, std::size_t ranks, std::size_t size, T* out) {
    constexpr std::size_t kBlock = 512;  // doubles: the block stays in L1, so that each loop vectorizes
    double sum[kBlock];
    for (std::size_t i0 = 0; i0 < size; i0 += kBlock) {
        const std::size_t len = std::min(kBlock, size - i0);
        const T* first = values + i0;
        for (std::size_t i = 0; i < len; ++i) sum[i] = first[i];
        for (std::size_t r = 1; r < ranks; ++r) {
            const T* theirs = values + r * stride + i0;
            for (std::size_t i = 0; i < len; ++i) sum[i] += theirs[i];
        }
        for (std::size_t i = 0; i < len; ++i) out[i0 + i] = static_cast<T>(sum[i]);
    }
}

template void sum_over_ranks(const float*, std::size_t, std::size_t, std::size_t, float*);
template void sum_over_ranks(const double*, std::size_t, std::size_t, std::size_t, double*);

void all_reduce_sum(Communicator& communicator, std::span<double> values) {
    const std::size_t ranks = static_cast<std::size_t>(communicator.size());
    if (ranks == 1) return;
    std::vector<double> every(ranks * values.size());
    communicator.all_gather(values, every);
    sum_over_ranks(every.data(), values.size(), ranks, values.size(), values.data());
}

bool launched_by_mpirun() {
    return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
           std::getenv("PMI_RANK") != nullptr;
}

std::shared_ptr<Communicator> single_process() {
    static const std::shared_ptr<Communicator> one = std::make_shared<SingleProcess>();
    return one;
}

}  // namespace xgrad
