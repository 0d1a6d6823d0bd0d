// The main job: the seed document's CNN (fc1 corrected) trained on Fashion-MNIST with and without
// its three BN layers, one epoch each (Adam, lr 1e-3, batch 64, seed 0), then a side-by-side
// table of test accuracy after 100 and 300 steps and at the end, and a plot of test accuracy
// against steps.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <ostream>

#include "layers/distributed/communicator.hpp"

namespace xgrad {

struct SeedCnnBnOptions {
    std::filesystem::path results = "results";
    std::size_t threads = 2;
    std::size_t epochs = 1;
    std::size_t eval_every = 100;
    // Under mpirun (world()), the two runs are trained side by side, one per rank; rank 0 prints
    // and plots.
    std::shared_ptr<Communicator> ranks = single_process();
    // run_all's: delete and train again runs another build made, rather than refuse them.
    bool rerun_stale = false;
};

// Runs (or resumes, or reuses) both runs under results/seed-cnn-bn/ and prints the table.
void run_seed_cnn_bn(const SeedCnnBnOptions& options, std::ostream& out);

}  // namespace xgrad
