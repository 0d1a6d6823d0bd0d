#include "layers/cross_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "layers/grad_kernels.hpp"

namespace xgrad {

template <class T>
Var<T> cross_entropy(const Var<T>& logits, const xt::xarray<std::int64_t>& labels) {
    if (logits.dim() != 2 || labels.dimension() != 1 || labels.size() != logits.shape()[0] || labels.size() == 0) {
        throw ShapeError("cross_entropy: expected logits (N, K) and labels (N) with N > 0, got logits " +
                         shape_str(logits.shape()) + " and labels " + shape_str(labels.shape()));
    }
    const std::size_t n = logits.shape()[0];
    const std::size_t k = logits.shape()[1];
    std::vector<std::size_t> targets(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t label = labels(i);
        if (label < 0 || static_cast<std::uint64_t>(label) >= k) {
            throw std::out_of_range("cross_entropy: label " + std::to_string(label) + " at index " +
                                    std::to_string(i) + " is out of range for " + std::to_string(k) +
                                    " classes (expected 0 <= label < " + std::to_string(k) + ")");
        }
        targets[i] = static_cast<std::size_t>(label);
    }

    // Per row: lse = max + log(sum(exp(x - max))), loss = lse - x[label]; sums in double. The
    // softmax exp(x - max) / sum is kept for the backward, which would otherwise take every exp again.
    const T* x = logits.value().data();
    std::vector<double> softmax(n * k);
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const T* row = x + i * k;
        double* p = softmax.data() + i * k;
        const double top = static_cast<double>(*std::max_element(row, row + k));
        double s = 0.0;
        for (std::size_t j = 0; j < k; ++j) {
            p[j] = std::exp(static_cast<double>(row[j]) - top);
            s += p[j];
        }
        for (std::size_t j = 0; j < k; ++j) p[j] /= s;
        total += top + std::log(s) - static_cast<double>(row[targets[i]]);
    }
    xt::xarray<T> loss = xt::xarray<T>::from_shape({});
    loss() = static_cast<T>(total / static_cast<double>(n));

    auto in = logits.node();
    return Var<T>::from_op(std::move(loss), "cross_entropy", {in},
                           [in, softmax = std::move(softmax), targets = std::move(targets), n, k](const Node<T>&, const xt::xarray<T>& grad_out) {
        const double scale = static_cast<double>(grad_out()) / static_cast<double>(n);
        const bool add = prepare_grad_buffer(*in);
        T* dx = in->grad.data();
        for (std::size_t i = 0; i < n; ++i) {
            for (std::size_t j = 0; j < k; ++j) {
                const T d = static_cast<T>(scale * (softmax[i * k + j] - (j == targets[i] ? 1.0 : 0.0)));
                dx[i * k + j] = add ? dx[i * k + j] + d : d;
            }
        }
    });
}

template Var<float> cross_entropy(const Var<float>&, const xt::xarray<std::int64_t>&);
template Var<double> cross_entropy(const Var<double>&, const xt::xarray<std::int64_t>&);

}  // namespace xgrad
