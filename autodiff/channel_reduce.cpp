#include "autodiff/channel_reduce.hpp"

#include <stdexcept>

namespace xgrad {

namespace {

void check_means(const char* op, const ChannelShape& shape, std::span<const double> mean) {
    if (mean.size() != shape.c) {
        throw ShapeError(std::string(op) + ": expected " + std::to_string(shape.c) + " channel means, got " +
                         std::to_string(mean.size()));
    }
}

}  // namespace

template <class T>
std::vector<double> channel_sum(const T* x, const ChannelShape& shape) {
    const auto sums = channel_sums<1>(shape, [x](std::size_t, std::size_t i) {
        return std::array<double, 1>{static_cast<double>(x[i])};
    });
    std::vector<double> out(sums.size());
    for (std::size_t c = 0; c < sums.size(); ++c) out[c] = sums[c][0];
    return out;
}

template <class T>
std::vector<double> channel_mean(const T* x, const ChannelShape& shape) {
    if (shape.per_channel() == 0 && shape.c > 0) {
        throw std::invalid_argument("channel_mean: the channels of a tensor of shape (N, C, S) = " +
                                    shape_str(std::array{shape.n, shape.c, shape.s}) + " have no elements");
    }
    std::vector<double> out = channel_sum(x, shape);
    const double count = static_cast<double>(shape.per_channel());
    for (double& m : out) m /= count;
    return out;
}

template <class T>
std::vector<double> channel_centered_sq_sum(const T* x, const ChannelShape& shape, std::span<const double> mean) {
    check_means("channel_centered_sq_sum", shape, mean);
    const double* m = mean.data();
    const auto sums = channel_sums<1>(shape, [x, m](std::size_t c, std::size_t i) {
        const double d = static_cast<double>(x[i]) - m[c];
        return std::array<double, 1>{d * d};
    });
    std::vector<double> out(sums.size());
    for (std::size_t c = 0; c < sums.size(); ++c) out[c] = sums[c][0];
    return out;
}

template <class T>
std::vector<std::array<double, 2>> channel_sum_and_centered_dot(const T* dy, const T* x, const ChannelShape& shape,
                                                                std::span<const double> mean) {
    check_means("channel_sum_and_centered_dot", shape, mean);
    const double* m = mean.data();
    return channel_sums<2>(shape, [dy, x, m](std::size_t c, std::size_t i) {
        const double g = static_cast<double>(dy[i]);
        return std::array<double, 2>{g, g * (static_cast<double>(x[i]) - m[c])};
    });
}

template std::vector<double> channel_sum(const float*, const ChannelShape&);
template std::vector<double> channel_sum(const double*, const ChannelShape&);
template std::vector<double> channel_mean(const float*, const ChannelShape&);
template std::vector<double> channel_mean(const double*, const ChannelShape&);
template std::vector<double> channel_centered_sq_sum(const float*, const ChannelShape&, std::span<const double>);
template std::vector<double> channel_centered_sq_sum(const double*, const ChannelShape&, std::span<const double>);
template std::vector<std::array<double, 2>> channel_sum_and_centered_dot(const float*, const float*,
                                                                         const ChannelShape&,
                                                                         std::span<const double>);
template std::vector<std::array<double, 2>> channel_sum_and_centered_dot(const double*, const double*,
                                                                         const ChannelShape&,
                                                                         std::span<const double>);

}  // namespace xgrad
