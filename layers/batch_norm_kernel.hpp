// The BatchNorm kernels over raw row-major (N, C, S) data, apart from the graph node so that
// benchmarks can time them: forward in training (batch statistics; running statistics moved)
// and in eval (running statistics), and the backward of each. T is float or double; the
// statistics (two passes: the mean, then the centred sum of squares) and the backward sums
// (Σ dy and Σ dy·(x - mean), one pass) are accumulated in double by the per-channel reduction.
//
// Per channel, everything is folded into a few coefficients first, so that the elementwise
// pass is one fused multiply-add chain per element:
//   forward            y  = (x - centre)·alpha + shift          alpha = gamma·invstd
//   backward, train    dx = dy·alpha + ((x - centre)·k + shift)
//   backward, eval     dx = dy·alpha
// centre is the mean rounded to T. x - centre is exact for x near the mean (Sterbenz), so data
// with a large mean and a small spread (1e4 + N(0, 1e-2) in float) keeps its precision, where
// torch's fold x·alpha + (beta - mean·alpha) adds two large rounded terms.
//
// When a channel's slab fits in a core's cache, a kernel runs its sums and its elementwise pass
// block of channels by block of channels, so that each tensor is read from memory once.
// Results do not depend on the thread count.
//
// The batch_norm_relu_ kernels are BN followed by a ReLU, y = max(0, BN(x)), fused: the ReLU is
// applied in the forward's elementwise pass, and the backward takes dy of the ReLU's output and
// gates it, in its sums and in its dx pass, by the ReLU's mask BN(x) > 0, so that the gradient
// between the two is never a tensor. The mask is recomputed from x (hence the backwards take
// beta) with the forward's coefficients and expression, which gives the forward's BN(x) bit for
// bit: the backward reads x anyway, where y > 0 would be a fourth tensor to read (and y one to
// keep). Results are those of the BN kernel and a separate ReLU, bit for bit.
#pragma once

#include <optional>
#include <vector>

#include "autodiff/channel_reduce.hpp"

namespace xgrad {

// The per-channel statistics a forward normalized with: what its backward needs.
struct BatchNormStats {
    std::vector<double> mean;
    std::vector<double> invstd;  // 1 / sqrt(var + eps)
};

// Running statistics that a training forward moves in place:
// r = (1 - factor)·r + factor·batch, with the unbiased batch variance (n/(n-1), n = N·S).
// factor is the momentum, or 1 / num_batches_tracked for a cumulative average.
template <class T>
struct RunningStats {
    T* mean;
    T* var;
    double factor;
};

// gamma and beta have C values each; null stands for 1 and 0 (affine=false). Outputs may not
// alias inputs.

// Training forward: normalizes with the batch mean and the biased batch variance, and moves
// `running` if given. Needs at least two values per channel (N·S >= 2).
template <class T>
BatchNormStats batch_norm_forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                        double eps, T* y, std::optional<RunningStats<T>> running = std::nullopt);

// Eval forward: normalizes with the running statistics.
template <class T>
BatchNormStats batch_norm_forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                       const T* running_mean, const T* running_var, double eps, T* y);

// Backward of a training forward that returned `stats`, given dy: dx, dgamma = Σ dy·x̂ and
// dbeta = Σ dy per channel. Any of the three outputs may be null (not wanted).
template <class T>
void batch_norm_backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma,
                               const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta);

// Backward of an eval forward: dx = dy·gamma·invstd, dgamma and dbeta as in training.
template <class T>
void batch_norm_backward_eval(const ChannelShape& shape, const T* dy, const T* x, const T* gamma,
                              const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta);

// BN then ReLU, fused: as the kernels above, with y = max(0, BN(x)), and dy the gradient of y.
template <class T>
BatchNormStats batch_norm_relu_forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                             double eps, T* y, std::optional<RunningStats<T>> running = std::nullopt);

template <class T>
BatchNormStats batch_norm_relu_forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                            const T* running_mean, const T* running_var, double eps, T* y);

template <class T>
void batch_norm_relu_backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const T* beta,
                                    const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta);

template <class T>
void batch_norm_relu_backward_eval(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const T* beta,
                                   const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta);

}  // namespace xgrad
