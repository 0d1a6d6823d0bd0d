// main() of the tests that run on every rank of a job (under mpirun, or alone): every rank runs the
// same tests in the same order (gtest's shuffle seed is rank 0's) and the same rapidcheck cases
// (rank 0's seed unless RC_PARAMS names one); only rank 0 writes the XML report meson reads (every
// rank would write the same file); every rank exits with the worst status of all. A test's
// verdicts must rest on numbers every rank holds alike (sums in rank order), so that every rank
// fails, shrinks and goes on alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "layers/distributed/communicator.hpp"

int main(int argc, char** argv) {
    xgrad::Communicator& communicator = *xgrad::world();
    // gtest sets up its report while it reads the flags: the other ranks must not see the flag.
    if (communicator.rank() != 0) {
        argc = static_cast<int>(std::remove_if(argv + 1, argv + argc, [](const char* arg) {
                                    return std::string_view(arg).starts_with("--gtest_output");
                                }) - argv);
        argv[argc] = nullptr;
    }
    testing::InitGoogleTest(&argc, argv);
    std::int32_t shuffle_seed = GTEST_FLAG_GET(random_seed);
    communicator.broadcast(std::as_writable_bytes(std::span(&shuffle_seed, 1)), 0);
    GTEST_FLAG_SET(random_seed, shuffle_seed);
    const char* given = std::getenv("RC_PARAMS");
    std::string params = given ? given : "";
    if (params.find("seed=") == std::string::npos) {
        std::uint64_t seed = std::random_device{}();
        seed = (seed << 32) ^ std::random_device{}();
        communicator.broadcast(std::as_writable_bytes(std::span(&seed, 1)), 0);
        params += " seed=" + std::to_string(seed);
        setenv("RC_PARAMS", params.c_str(), 1);
    }
    std::vector<double> failed{RUN_ALL_TESTS() != 0 ? 1.0 : 0.0};
    xgrad::all_reduce_sum(communicator, failed);
    return failed[0] > 0.0 ? 1 : 0;
}
