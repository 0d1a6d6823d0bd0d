#include "layers/batch_norm.hpp"

#include <algorithm>
#include <charconv>
#include <memory>
#include <stdexcept>
#include <utility>

#include <xtensor/xbuilder.hpp>

#include "autodiff/channel_reduce.hpp"
#include "layers/batch_norm_kernel.hpp"

namespace xgrad {

namespace {

// A size as torch prints it inside torch.Size(...): "[1, 10]".
std::string torch_size(const Shape& shape) {
    const std::string s = shape_str(shape);
    return "[" + s.substr(1, s.size() - 2) + "]";
}

// Python's repr of a float, as torch's module reprs show eps and momentum: "1e-05", "0.1".
std::string python_float(double v) {
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    return std::string(buf, end);
}

template <class T>
void check_per_channel(const std::string& where, const char* what, const xt::xarray<T>& v, const Shape& x_shape) {
    if (v.dimension() != 1 || v.size() != x_shape[1]) {
        throw ShapeError(where + ": " + what + " of shape " + shape_str(v.shape()) + " given for an input with C=" +
                         std::to_string(x_shape[1]) + " channels " + shape_str(x_shape));
    }
}

template <class T>
using Grad = std::optional<xt::xarray<T>>;

// An uninitialized gradient for `node` if it wants one.
template <class T>
Grad<T> grad_for(const std::shared_ptr<Node<T>>& node) {
    if (!node || !node->requires_grad) return std::nullopt;
    return xt::xarray<T>::from_shape(node->value.shape());
}

template <class T>
T* data_or_null(Grad<T>& g) {
    return g ? g->data() : nullptr;
}

template <class T>
void pass_on(const std::shared_ptr<Node<T>>& node, Grad<T>& g) {
    if (g) accumulate_grad(*node, std::move(*g));
}

// The backward kernels with one signature: beta, which only the fused ReLU's mask needs, is
// ignored by the others.
template <class T>
using BackwardKernel = void (*)(const ChannelShape&, const T* dy, const T* x, const T* gamma, const T* beta,
                                const BatchNormStats&, T* dx, T* dgamma, T* dbeta);

template <class T>
BackwardKernel<T> backward_kernel(bool training, bool relu) {
    if (relu) return training ? batch_norm_relu_backward_train<T> : batch_norm_relu_backward_eval<T>;
    if (training) {
        return [](const ChannelShape& sh, const T* dy, const T* x, const T* gamma, const T*, const BatchNormStats& st,
                  T* dx, T* dgamma, T* dbeta) { batch_norm_backward_train(sh, dy, x, gamma, st, dx, dgamma, dbeta); };
    }
    return [](const ChannelShape& sh, const T* dy, const T* x, const T* gamma, const T*, const BatchNormStats& st, T* dx,
              T* dgamma, T* dbeta) { batch_norm_backward_eval(sh, dy, x, gamma, st, dx, dgamma, dbeta); };
}

}  // namespace

template <class T>
Var<T> batch_norm(const Var<T>& x, const BatchNormArgs<T>& args, std::string_view where) {
    const std::string who(where);
    const Shape shape = x.shape();
    if (shape.size() < 2) throw ShapeError(who + ": expected input (N, C, ...), got " + shape_str(shape));
    if (args.weight) check_per_channel(who, "weight", args.weight->value(), shape);
    if (args.bias) check_per_channel(who, "bias", args.bias->value(), shape);
    if (!args.running_mean != !args.running_var) {
        throw std::invalid_argument(who + ": running_mean and running_var must be given together");
    }
    const bool has_running = args.running_mean != nullptr;
    if (has_running) {
        check_per_channel(who, "running_mean", *args.running_mean, shape);
        check_per_channel(who, "running_var", *args.running_var, shape);
    }
    if (!args.training && !has_running) {
        throw std::invalid_argument(who + ": running statistics are needed outside training");
    }
    const ChannelShape sh = channel_shape(shape);
    if (args.training && sh.per_channel() <= 1) {
        throw ShapeError(who + ": Expected more than 1 value per channel when training, got input size " +
                         torch_size(shape));
    }

    const T* gamma = args.weight ? args.weight->value().data() : nullptr;
    const T* beta = args.bias ? args.bias->value().data() : nullptr;
    xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
    BatchNormStats stats;
    if (args.training) {
        std::optional<RunningStats<T>> running;
        if (has_running) running = RunningStats<T>{args.running_mean->data(), args.running_var->data(), args.momentum};
        const auto forward = args.relu ? batch_norm_relu_forward_train<T> : batch_norm_forward_train<T>;
        stats = forward(sh, x.value().data(), gamma, beta, args.eps, y.data(), running);
    } else {
        const auto forward = args.relu ? batch_norm_relu_forward_eval<T> : batch_norm_forward_eval<T>;
        stats = forward(sh, x.value().data(), gamma, beta, args.running_mean->data(), args.running_var->data(), args.eps,
                        y.data());
    }

    using NodePtr = typename Var<T>::NodePtr;
    const NodePtr xn = x.node();
    const NodePtr gn = args.weight ? args.weight->node() : nullptr;
    const NodePtr bn = args.bias ? args.bias->node() : nullptr;
    std::vector<NodePtr> inputs{xn};
    if (gn) inputs.push_back(gn);
    if (bn) inputs.push_back(bn);
    const auto kernel = backward_kernel<T>(args.training, args.relu);
    return Var<T>::from_op(std::move(y), args.relu ? "batch_norm_relu" : "batch_norm", std::move(inputs),
                           [xn, gn, bn, sh, kernel, stats = std::move(stats)](const Node<T>&, const xt::xarray<T>& grad_out) {
                               Grad<T> dx = grad_for(xn);
                               Grad<T> dgamma = grad_for(gn);
                               Grad<T> dbeta = grad_for(bn);
                               kernel(sh, grad_out.data(), xn->value.data(), gn ? gn->value.data() : nullptr,
                                      bn ? bn->value.data() : nullptr, stats, data_or_null(dx), data_or_null(dgamma),
                                      data_or_null(dbeta));
                               pass_on(xn, dx);
                               pass_on(gn, dgamma);
                               pass_on(bn, dbeta);
                           });
}

template <class T>
BatchNorm<T>::BatchNorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                        std::size_t num_features, BatchNormOptions options, bool relu)
    : kind_(kind), ranks_(ranks), layout_(layout), num_features_(num_features), options_(options), relu_(relu) {
    const std::vector<std::size_t> c{num_features};
    if (options.affine) {
        weight_ = this->register_parameter("weight", Var<T>(xt::xarray<T>(xt::ones<T>(c))));
        bias_ = this->register_parameter("bias", Var<T>(xt::xarray<T>(xt::zeros<T>(c))));
    }
    if (options.track_running_stats) {
        running_mean_ = &this->register_buffer("running_mean", xt::zeros<T>(c));
        running_var_ = &this->register_buffer("running_var", xt::ones<T>(c));
        num_batches_tracked_ = &this->register_counter("num_batches_tracked", 0);
    }
}

template <class T>
void BatchNorm<T>::check_input(const Shape& shape) const {
    if (std::find(ranks_.begin(), ranks_.end(), shape.size()) == ranks_.end()) {
        throw ShapeError(this->where() + ": expected input " + layout_ + ", got " + shape_str(shape));
    }
    if (shape[1] != num_features_) {
        throw ShapeError(this->where() + ": expected C=" + std::to_string(num_features_) + " channels, got input " +
                         shape_str(shape));
    }
}

template <class T>
Var<T> BatchNorm<T>::forward(const Var<T>& x) {
    check_input(x.shape());
    const bool training = this->is_training();
    BatchNormArgs<T> args{weight_, bias_, running_mean_, running_var_, training || !running_mean_,
                          options_.momentum.value_or(0.0), options_.eps, relu_};
    // Counted only once the batch is accepted: a rejected batch leaves the state as it was.
    const std::int64_t batches = training && num_batches_tracked_ ? *num_batches_tracked_ + 1 : 0;
    if (batches > 0 && !options_.momentum) args.momentum = 1.0 / static_cast<double>(batches);
    Var<T> y = batch_norm(x, args, this->where());
    if (batches > 0) *num_batches_tracked_ = batches;
    return y;
}

template <class T>
std::string BatchNorm<T>::describe() const {
    const auto py_bool = [](bool b) { return b ? "True" : "False"; };
    return std::string(kind_) + "(" + std::to_string(num_features_) + ", eps=" + python_float(options_.eps) +
           ", momentum=" + (options_.momentum ? python_float(*options_.momentum) : "None") +
           ", affine=" + py_bool(options_.affine) + ", track_running_stats=" + py_bool(options_.track_running_stats) +
           ")";
}

template Var<float> batch_norm(const Var<float>&, const BatchNormArgs<float>&, std::string_view);
template Var<double> batch_norm(const Var<double>&, const BatchNormArgs<double>&, std::string_view);
template class BatchNorm<float>;
template class BatchNorm<double>;

}  // namespace xgrad
