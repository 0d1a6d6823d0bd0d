#include "experiments/drivers.hpp"

namespace xgrad {

const std::vector<Driver>& drivers() {
    static const std::vector<Driver> all{
        {"convergence", "paper-mlp with and without BN: test accuracy against steps (Fig. 1a)", run_convergence},
        {"distributions", "a last-layer sigmoid's input percentiles over training (Fig. 1b, c)", run_distributions},
        {"learning-rate", "learning-rate multipliers with and without BN (Fig. 3)", run_learning_rate},
        {"init", "sensitivity to the scale of Gaussian initialization", run_init},
        {"regularization", "train/test gap with and without BN and Dropout", run_regularization},
        {"noisy-bn", "BN with injected distribution noise; loss landscape (Santurkar et al.)", run_noisy_bn},
        {"ics", "internal covariate shift in the gradient sense, with, without and with noisy BN (Santurkar et al.)", run_ics},
        {"depth", "sigmoid MLPs of growing depth with and without a norm: which train (BN-x5-Sigmoid)", run_depth},
        {"saturation", "the saturated fraction of each sigmoid's input over training, with and without BN", run_saturation},
    };
    return all;
}

TrainConfig paper_mlp_config(const std::string& dataset, Norm norm) {
    TrainConfig c;
    c.model.name = "paper-mlp";
    c.model.norm = norm;
    c.dataset = dataset;
    c.optimizer = "sgd";
    c.lr = 0.1;
    c.batch = 60;
    return c;
}

}  // namespace xgrad
