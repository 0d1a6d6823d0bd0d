// The experiment drivers: `xgrad experiment NAME --profile quick|paper`. Each trains its runs
// (experiment.hpp), writes plots and claims.json under <results>/NAME/ and prints a summary.
//   convergence     paper §4.1, Fig. 1(a): paper-mlp with and without BN, test accuracy over steps
//   distributions   Fig. 1(b, c): percentiles of a last-layer sigmoid's input over training
//   learning-rate   §4.2, Fig. 3: learning-rate multipliers with and without BN, paper-mlp and seed-cnn
//   init            the seed's claim 4: sensitivity to the scale of Gaussian initialization
//   regularization  the seed's claim 3 and §4.2.1: train/test gap with and without BN and Dropout
//   noisy-bn        Santurkar et al. 2018: BN with injected distribution noise, and the landscape
//   ics             Santurkar et al. 2018: internal covariate shift in the gradient sense
//   depth           §4.2.2, BN-x5-Sigmoid: which sigmoid MLPs of 3 to 20 layers train, by norm and lr
//   saturation      §1: the fraction of saturated sigmoid inputs per layer over training, same runs
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

}  // namespace xgrad
