// Optimizer: the base of SGD and Adam. Holds the parameters and the learning rate; step()
// updates every parameter that has a gradient (the others are skipped, as torch skips a
// parameter whose grad is None), in place and without recording a graph.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/var.hpp"

namespace xgrad {

template <class T>
class Optimizer {
public:
    Optimizer(std::vector<Var<T>> params, double lr) : params_(std::move(params)), lr_(lr) { check_lr(lr); }
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    virtual void step() = 0;
    void zero_grad() {
        for (auto& p : params_) p.zero_grad();
    }

    const std::vector<Var<T>>& params() const { return params_; }
    double lr() const { return lr_; }
    // For learning-rate schedules.
    void set_lr(double lr) {
        check_lr(lr);
        lr_ = lr;
    }

protected:
    std::vector<Var<T>> params_;
    double lr_;

private:
    static void check_lr(double lr) {
        if (!(lr >= 0.0)) throw std::invalid_argument("Invalid learning rate: " + std::to_string(lr));
    }
};

}  // namespace xgrad
