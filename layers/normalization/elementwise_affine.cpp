#include "layers/normalization/elementwise_affine.hpp"

#include "layers/normalization/channel_reduce.hpp"

namespace xgrad {

template <class T>
void elementwise_affine_backward(std::size_t rows, std::size_t columns, const Normalization& norm, const T* dy,
                                 const T* x, T* dgamma, T* dbeta) {
    if (!dgamma && !dbeta) return;
    if (norm.mean.size() != rows || norm.invstd.size() != rows) {
        throw ShapeError("elementwise affine backward: expected statistics of " + std::to_string(rows) + " rows, got " +
                         std::to_string(norm.mean.size()));
    }
    const double* mean = norm.mean.data();
    const double* invstd = norm.invstd.data();
    // Element i = n·columns + j is channel j, sample n of the (rows, columns, 1) view.
    const auto sums = channel_sums<2>(ChannelShape{rows, columns, 1}, [=](std::size_t, std::size_t n, std::size_t i) {
        const double g = static_cast<double>(dy[i]);
        return std::array<double, 2>{g * (static_cast<double>(x[i]) - mean[n]) * invstd[n], g};
    });
    for (std::size_t j = 0; j < columns; ++j) {
        if (dgamma) dgamma[j] = static_cast<T>(sums[j][0]);
        if (dbeta) dbeta[j] = static_cast<T>(sums[j][1]);
    }
}

template void elementwise_affine_backward(std::size_t, std::size_t, const Normalization&, const float*, const float*,
                                          float*, float*);
template void elementwise_affine_backward(std::size_t, std::size_t, const Normalization&, const double*,
                                          const double*, double*, double*);

}  // namespace xgrad
