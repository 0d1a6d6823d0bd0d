// The experiment drivers: `xgrad experiment NAME --profile quick|paper`. Each trains its runs
// (experiment.hpp), writes plots and claims.json under <results>/NAME/ and prints a summary.
//   convergence     paper §4.1, Fig. 1(a): paper-mlp with and without BN, under torch's and the paper's
//                   Gaussian init: steps to a target test accuracy and final accuracy
//   distributions   Fig. 1(b, c): percentiles of a last-layer sigmoid's input over training
//   learning-rate   §4.2, Fig. 3: learning-rate multipliers with and without BN, paper-mlp and seed-cnn
//   init            the seed's claim 4: sensitivity to the scale of Gaussian initialization
//   regularization  the seed's claim 3 and §4.2.1: train/test loss and accuracy gaps with and without BN
//                   and Dropout; BN with against without Dropout
//   noisy-bn        Santurkar et al. 2018: BN with injected distribution noise, and the landscape
//   ics             Santurkar et al. 2018: internal covariate shift in the gradient sense
//   depth           §4.2.2, BN-x5-Sigmoid: which sigmoid MLPs of 3 to 20 layers train, by norm and lr
//   saturation      §1: the fraction of saturated sigmoid inputs per layer over training, same runs
//   batch-size      Wu & He 2018, Table 3: every norm's test error against the batch size
//   train-eval      Wu & Johnson 2021, §3-4: running statistics (EMA, cumulative) against PreciseBN
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "experiments/experiment.hpp"

namespace xgrad {

struct Driver {
    std::string name, description;
    std::function<void(const ExperimentOptions&, std::ostream&)> run;
};

// Every driver, in the order `experiment all` runs them and REPORT.md lists them.
const std::vector<Driver>& drivers();

// The MLP of the paper's §4.1 as the drivers train it: SGD, learning rate 0.1, batch 60, torch's
// default initialization.
TrainConfig paper_mlp_config(const std::string& dataset, Norm norm);

// seed-cnn as batch-size and train-eval train it on `images` training images (the first of
// Fashion-MNIST, or a synthetic set of that size): SGD with momentum 0.9 and the learning rate
// scaled linearly with the batch, 0.1 * batch / 256 (Goyal et al. 2017's rule, which Wu & He
// follow), for `epochs` epochs, each a whole number of steps.
TrainConfig scaled_lr_cnn_config(const std::string& dataset, Norm norm, std::size_t batch, std::size_t images,
                                 std::size_t epochs);
// The steps of one epoch of `images` at `batch` (an incomplete last batch is a step).
std::size_t steps_per_epoch(std::size_t images, std::size_t batch);

// The runs a driver trains for a profile, in its order, without training them: for the spec files
// of experiments/specs/ to be checked against (tests/sweep_test.cpp).
std::vector<RunSpec> init_runs(Profile profile);
// learning-rate's runs of `model` ("paper-mlp" or "seed-cnn"; another is std::invalid_argument).
std::vector<RunSpec> learning_rate_runs(Profile profile, const std::string& model);

void run_convergence(const ExperimentOptions& options, std::ostream& out);
void run_distributions(const ExperimentOptions& options, std::ostream& out);
void run_learning_rate(const ExperimentOptions& options, std::ostream& out);
void run_init(const ExperimentOptions& options, std::ostream& out);
void run_regularization(const ExperimentOptions& options, std::ostream& out);
void run_noisy_bn(const ExperimentOptions& options, std::ostream& out);
void run_ics(const ExperimentOptions& options, std::ostream& out);
void run_depth(const ExperimentOptions& options, std::ostream& out);
void run_saturation(const ExperimentOptions& options, std::ostream& out);
void run_batch_size(const ExperimentOptions& options, std::ostream& out);
void run_train_eval(const ExperimentOptions& options, std::ostream& out);

}  // namespace xgrad
