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
        {"batch-size", "every norm's test error against the batch size (Wu & He, Table 3)", run_batch_size},
        {"train-eval", "running statistics against PreciseBN, eval against train mode (Wu & Johnson)", run_train_eval},
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

std::size_t steps_per_epoch(std::size_t images, std::size_t batch) { return (images + batch - 1) / batch; }

TrainConfig scaled_lr_cnn_config(const std::string& dataset, Norm norm, std::size_t batch, std::size_t images,
                                 std::size_t epochs) {
    TrainConfig c;
    c.model.name = "seed-cnn";
    c.model.norm = norm;
    c.dataset = dataset;
    if (dataset == "synthetic") {
        c.synthetic_size = images;
    } else {
        c.train_subset = images;
    }
    c.optimizer = "sgd";
    c.momentum = 0.9;
    c.batch = batch;
    c.lr = 0.1 * static_cast<double>(batch) / 256.0;
    c.steps = epochs * steps_per_epoch(images, batch);
    return c;
}

}  // namespace xgrad
