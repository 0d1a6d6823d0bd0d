// BatchNorm's forward and backward kernels as the layer composes them from the normalization
// stages (layers/normalization/normalize.hpp), over raw data, for the tests that run them apart
// from the graph: training (batch statistics) and eval (running statistics), with an epilogue.
#pragma once

#include <cstddef>

#include "layers/normalization/normalize.hpp"

namespace xgrad_test {

// Writes y, and dx, dgamma, dbeta for the output gradient dy.
template <class T, class Epilogue>
void batch_norm_train(const xgrad::ChannelShape& sh, const T* x, const T* gamma, const T* beta, double eps,
                      const Epilogue& epilogue, const T* dy, T* y, T* dx, T* dgamma, T* dbeta) {
    const auto grouping = xgrad::Grouping::per_channel(sh);
    xgrad::NormalizeOptions<T> options;
    options.eps = eps;
    options.gamma = gamma;
    options.beta = beta;
    const auto batch = xgrad::normalize_batch(grouping, x, options, epilogue, y);
    xgrad::normalize_backward(grouping, batch, xgrad::GradientThrough::batch(), dy, x, gamma, beta, epilogue,
                              xgrad::NormalizeGrads<T>{dx, dgamma, dbeta});
}

template <class T, class Epilogue>
void batch_norm_eval(const xgrad::ChannelShape& sh, const T* x, const T* gamma, const T* beta, const T* running_mean,
                     const T* running_var, double eps, const Epilogue& epilogue, const T* dy, T* y, T* dx, T* dgamma,
                     T* dbeta) {
    const auto grouping = xgrad::Grouping::per_channel(sh);
    xgrad::NormalizeOptions<T> options;
    options.gamma = gamma;
    options.beta = beta;
    xgrad::NormalizedBatch batch{xgrad::running_normalization(running_mean, running_var, sh.c, eps), {}};
    xgrad::normalize_with(grouping, batch.norm, x, options, epilogue, y);
    xgrad::normalize_backward(grouping, batch, xgrad::GradientThrough::constants(), dy, x, gamma, beta, epilogue,
                              xgrad::NormalizeGrads<T>{dx, dgamma, dbeta});
}

}  // namespace xgrad_test
