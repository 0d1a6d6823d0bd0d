// main() of the tests that run on every rank of a job (under mpirun, or alone): every rank runs the
// same rapidcheck cases, from rank 0's seed unless RC_PARAMS names one, and only rank 0 writes the
// XML report meson reads (every rank would write the same file). A test's verdicts must rest on
// numbers every rank holds alike (sums in rank order), so that every rank fails, shrinks and goes
// on alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "layers/distributed/communicator.hpp"

int main(int argc, char** argv) {
    xgrad::Communicator& communicator = *xgrad::world();
    // gtest sets up its report while it reads the flags: the other ranks must not see the flag.
    if (communicator.rank() != 0) {
        argc = static_cast<int>(std::remove_if(argv + 1, argv + argc, [](const char* arg) {
                                    return std::string_view(arg).starts_with("--gtest_output");
                                }) - argv);
    }
    testing::InitGoogleTest(&argc, argv);
    const char* given = std::getenv("RC_PARAMS");
    std::string params = given ? given : "";
    if (params.find("seed=") == std::string::npos) {
        std::uint64_t seed = std::random_device{}();
        seed = (seed << 32) ^ std::random_device{}();
        communicator.broadcast(std::as_writable_bytes(std::span(&seed, 1)), 0);
        params += " seed=" + std::to_string(seed);
        setenv("RC_PARAMS", params.c_str(), 1);
    }
    return RUN_ALL_TESTS();
}
