// Optimizer: the base of SGD and Adam. Holds the parameters and the learning rate; step()
// updates every parameter that has a gradient (the others are skipped, as torch skips a
// parameter whose grad is None), in place and without recording a graph.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/shape.hpp"
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
    // Checks made before a step changes anything, for what the step reads over each parameter's
    // elements and others can change: a value's shape (mutable_value) and the state (the
    // optimizers' accessors, the checkpoint loader). A gradient of another shape than its
    // parameter's, or a state of another size than the parameter list, is an error naming it.
    void check_gradients(const char* optimizer, std::size_t state_entries) const {
        if (state_entries != params_.size()) {
            throw std::logic_error(std::string(optimizer) + ": its state holds " + std::to_string(state_entries) +
                                   " entries for " + std::to_string(params_.size()) + " parameters");
        }
        for (std::size_t i = 0; i < params_.size(); ++i) {
            if (params_[i].has_grad()) check_shape(optimizer, i, params_[i].grad(), "gradient");
        }
    }
    // `tensor`, parameter i's gradient or the piece of its state named `what`, has its shape.
    void check_shape(const char* optimizer, std::size_t i, const xt::xarray<T>& tensor, const char* what) const {
        const auto& value = params_[i].value();
        if (tensor.shape() == value.shape()) return;
        throw std::invalid_argument(std::string(optimizer) + ": the " + what + " of parameter " + std::to_string(i) +
                                    " has shape " + shape_str(tensor.shape()) + ", the parameter " +
                                    shape_str(value.shape()));
    }

    std::vector<Var<T>> params_;
    double lr_;

private:
    static void check_lr(double lr) {
        if (!(lr >= 0.0)) throw std::invalid_argument("Invalid learning rate: " + std::to_string(lr));
    }
};

}  // namespace xgrad
