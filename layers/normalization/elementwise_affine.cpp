#include "layers/normalization/elementwise_affine.hpp"

#include <string>

namespace xgrad {

template <class T>
ElementwiseAffineEpilogue<T> ElementwiseAffineEpilogue<T>::per_channel(const T* gamma, const T* beta,
                                                                       const ChannelShape& shape, std::size_t groups) {
    if (groups == 0 || shape.c % groups != 0 || shape.c / groups * shape.s < 2) {
        throw ShapeError("elementwise affine: rows of " + std::to_string(groups) + " groups over " +
                         std::to_string(shape.c) + " channels of " + std::to_string(shape.s) +
                         " elements: the groups must divide the channels, with two elements a group");
    }
    std::vector<T> g(shape.c * shape.s), b(shape.c * shape.s);
    for (std::size_t c = 0, j = 0; c < shape.c; ++c) {
        for (std::size_t s = 0; s < shape.s; ++s, ++j) {
            g[j] = gamma[c];
            b[j] = beta[c];
        }
    }
    return ElementwiseAffineEpilogue(std::move(g), std::move(b), groups);
}

namespace {

// The column sums of dy·(x - mean)·invstd and dy with element (c, n)'s statistics at
// statistic(c, n), into dgamma and dbeta.
template <class T, class Statistic>
void affine_sums(const ChannelShape& shape, const Normalization& norm, const Statistic& statistic, const T* dy,
                 const T* x, T* dgamma, T* dbeta) {
    const double* mean = norm.mean.data();
    const double* invstd = norm.invstd.data();
    const auto sums = channel_sums<2>(shape, [=](std::size_t c, std::size_t n, std::size_t i) {
        const std::size_t k = statistic(c, n);
        const double g = static_cast<double>(dy[i]);
        return std::array<double, 2>{g * (static_cast<double>(x[i]) - mean[k]) * invstd[k], g};
    });
    for (std::size_t c = 0; c < shape.c; ++c) {
        if (dgamma) dgamma[c] = static_cast<T>(sums[c][0]);
        if (dbeta) dbeta[c] = static_cast<T>(sums[c][1]);
    }
}

}  // namespace

template <class T>
void elementwise_affine_backward(const ChannelShape& shape, std::size_t groups, const Normalization& norm, const T* dy,
                                 const T* x, T* dgamma, T* dbeta) {
    if (!dgamma && !dbeta) return;
    if (groups == 0 || shape.c % groups != 0) {
        throw ShapeError("elementwise affine backward: " + std::to_string(groups) + " groups do not divide " +
                         std::to_string(shape.c) + " channels");
    }
    const std::size_t statistics = shape.n * groups;
    if (norm.mean.size() != statistics || norm.invstd.size() != statistics) {
        throw ShapeError("elementwise affine backward: expected " + std::to_string(statistics) + " means and " +
                         "inverse deviations (" + std::to_string(shape.n) + " samples of " + std::to_string(groups) +
                         " groups), got " + std::to_string(norm.mean.size()) + " and " +
                         std::to_string(norm.invstd.size()));
    }
    // One group a sample (LayerNorm's many short rows, or its parameters' gradients without dx):
    // the sample's statistics, which the reduction's loops hold across a row; a lookup per element
    // there made LayerNorm's backward up to 1.7x as long.
    if (groups == 1) {
        affine_sums(shape, norm, [](std::size_t, std::size_t n) { return n; }, dy, x, dgamma, dbeta);
        return;
    }
    // Several: each channel's group looked up, as a division per element costs more than the
    // rest of the term.
    std::vector<std::size_t> group_of(shape.c);
    for (std::size_t c = 0; c < shape.c; ++c) group_of[c] = c / (shape.c / groups);
    const std::size_t* group = group_of.data();
    affine_sums(shape, norm, [=](std::size_t c, std::size_t n) { return n * groups + group[c]; }, dy, x, dgamma,
                dbeta);
}

template class ElementwiseAffineEpilogue<float>;
template class ElementwiseAffineEpilogue<double>;
template void elementwise_affine_backward(const ChannelShape&, std::size_t, const Normalization&, const float*,
                                          const float*, float*, float*);
template void elementwise_affine_backward(const ChannelShape&, std::size_t, const Normalization&, const double*,
                                          const double*, double*, double*);

}  // namespace xgrad
