#include "layers/normalization/batch_norm.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <utility>

#include <xtensor/xbuilder.hpp>

#include "layers/normalization/normalization_node.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

namespace {

// A size as torch prints it inside torch.Size(...): "[1, 10]".
std::string torch_size(const Shape& shape) {
    const std::string s = shape_str(shape);
    return "[" + s.substr(1, s.size() - 2) + "]";
}

template <class T>
void check_per_channel(const std::string& where, const char* what, const xt::xarray<T>& v, const Shape& x_shape) {
    if (v.dimension() != 1 || v.size() != x_shape[1]) {
        throw ShapeError(where + ": " + what + " of shape " + shape_str(v.shape()) + " given for an input with C=" +
                         std::to_string(x_shape[1]) + " channels " + shape_str(x_shape));
    }
}

}  // namespace

template <class T>
NormalizeOptions<T> checked_batch_norm_options(const Shape& shape, const BatchNormArgs<T>& args, const std::string& who) {
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
    if (args.training && channel_shape(shape).per_channel() <= 1) {
        throw ShapeError(who + ": Expected more than 1 value per channel when training, got input size " +
                         torch_size(shape));
    }
    NormalizeOptions<T> options;
    options.eps = args.eps;
    options.gamma = args.weight ? args.weight->value().data() : nullptr;
    options.beta = args.bias ? args.bias->value().data() : nullptr;
    if (args.training && has_running) {
        options.running = RunningStats<T>{args.running_mean->data(), args.running_var->data(), args.momentum};
    }
    if (args.training && args.renorm) {
        if (!has_running) throw std::invalid_argument(who + ": Batch Renorm needs running statistics in training");
        options.renorm = args.renorm;
    }
    return options;
}

template <class T>
Var<T> batch_norm(const Var<T>& x, const BatchNormArgs<T>& args, std::string_view where) {
    const std::string who(where);
    const Shape shape = x.shape();
    const NormalizeOptions<T> options = checked_batch_norm_options(shape, args, who);
    const ChannelShape sh = channel_shape(shape);
    const Grouping grouping = Grouping::per_channel(sh);
    const auto run = [&](const auto& epilogue) {
        xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
        NormalizedBatch batch;
        if (args.training) {
            batch = normalize_batch(grouping, x.value().data(), options, epilogue, y.data());
        } else {
            batch.norm = running_normalization(args.running_mean->data(), args.running_var->data(), sh.c, args.eps);
            normalize_with(grouping, batch.norm, x.value().data(), options, epilogue, y.data());
        }
        const GradientThrough through = args.training ? GradientThrough::batch() : GradientThrough::constants();
        return normalization_node(args.relu ? "batch_norm_relu" : "batch_norm", x, std::move(y), grouping,
                                  std::move(batch), through, NormalizationParameters<T>{args.weight, args.bias, {}},
                                  epilogue);
    };
    return args.relu ? run(ReluEpilogue{}) : run(NoEpilogue{});
}

template <class T>
BatchNorm<T>::BatchNorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                        std::size_t num_features, BatchNormOptions options, bool relu)
    : kind_(kind), ranks_(ranks), layout_(layout), num_features_(num_features), options_(options), relu_(relu) {
    if (options.affine) this->register_affine({num_features});
    if (options.track_running_stats) this->register_running_statistics(num_features);
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
    this->check_state();
    const bool training = this->is_training();
    xt::xarray<T>* running_mean = this->running_mean_buffer();
    std::int64_t* tracked = this->batches_tracked();
    BatchNormArgs<T> args{this->weight(), this->bias(), running_mean, this->running_var_buffer(),
                          training || !running_mean, options_.momentum.value_or(0.0), options_.eps, relu_};
    // Counted only once the batch is accepted: a rejected batch leaves the state as it was.
    const std::int64_t batches = training && tracked ? *tracked + 1 : 0;
    if (batches > 0) {
        args.momentum = running_factor(batches);
        args.renorm = renorm_limits(batches - 1);
    }
    Var<T> y = normalize(x, args);
    if (batches > 0) *tracked = batches;
    return y;
}

template <class T>
double BatchNorm<T>::running_factor(std::int64_t batches) const {
    return options_.momentum ? *options_.momentum : 1.0 / static_cast<double>(batches);
}

template <class T>
std::string BatchNorm<T>::describe() const {
    return std::string(kind_) + "(" + std::to_string(num_features_) + ", eps=" + python_float(options_.eps) +
           ", momentum=" + (options_.momentum ? python_float(*options_.momentum) : "None") +
           ", affine=" + python_bool(options_.affine) + ", track_running_stats=" + python_bool(options_.track_running_stats) +
           ")";
}

template NormalizeOptions<float> checked_batch_norm_options(const Shape&, const BatchNormArgs<float>&, const std::string&);
template NormalizeOptions<double> checked_batch_norm_options(const Shape&, const BatchNormArgs<double>&, const std::string&);
template Var<float> batch_norm(const Var<float>&, const BatchNormArgs<float>&, std::string_view);
template Var<double> batch_norm(const Var<double>&, const BatchNormArgs<double>&, std::string_view);
template class BatchNorm<float>;
template class BatchNorm<double>;

}  // namespace xgrad
