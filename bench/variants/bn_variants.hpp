// BatchNorm kernels written several ways, for bench/bn_variants_bench.cpp to time side by side
// with the library's (layers/normalization/normalize.hpp over Grouping::per_channel) and
// bench/variants/bn_variants_test.cpp to check against it. Each function varies one thing at a
// time over the same per-channel arithmetic, the library's fold (coefficients.hpp):
//   statistics   Algorithm: two-pass, one-pass Σx and Σx², Welford per element, Welford per
//                chunk with Chan's merges;
//   accumulation Acc: float or double for float data T (double for double);
//   schedule     Schedule: serial, TBB over channels, TBB over blocks of samples with per-block
//                partials merged in block order;
//   code         Code: plain loops left to the compiler's vectorizer, or xsimd batches;
//   layout       NCHW, xgrad's (N, C, S) row-major, or NHWC, (N, S, C) row-major (namespace nhwc);
// plus the composition of xtensor reducers and expressions (namespace xtensor) as the naive
// baseline. Data are raw row-major arrays; gamma and beta have C values and may not be null.
//
// Per channel, with n = N·S values: mean, biased var, x̂ = (x - mean)/sqrt(var + eps),
//   forward train  y = gamma·x̂ + beta
//   backward train dx = gamma/sqrt(var + eps)/n·(n·dy - Σdy - x̂·Σ(dy·x̂)), dgamma = Σdy·x̂, dbeta = Σdy
//   forward eval   y as in training with the running mean and variance.
// The elementwise passes are the same for every statistics algorithm, and subtract the mean
// rounded to T first, with the library's coefficients: exact for x near the mean, so a float input
// of large mean and small spread keeps its precision there, and only the statistics differ.
#pragma once

#include <cstddef>
#include <string_view>

#include "layers/normalization/statistics.hpp"

namespace bn_variants {

using xgrad::ChannelShape;

// Per-channel batch statistics (the library's stage 1 result), in double whatever was accumulated.
using xgrad::Moments;

enum class Algorithm {
    two_pass,         // the mean, then Σ(x - mean)²
    one_pass,         // Σx and Σx² together, var = max(0, E[x²] - mean²): cancels when mean² >> var
    welford,          // the recurrence per element, in independent lanes merged at the end of a run
    chunked_welford,  // (count, mean, M2) of each chunk by two passes over it in cache, Chan-merged
};

enum class Schedule {
    serial,         // the calling thread
    over_channels,  // TBB tasks of whole channels: every channel summed as serially
    over_blocks,    // TBB tasks of whole samples (n), all channels; per-block partials merged
};

enum class Code {
    plain,  // loops over independent lanes, vectorized by the compiler
    xsimd,  // xsimd::batch<Acc> loads, adds and FMAs written by hand (xsimd's default arch)
};

// How the passes are cut into TBB tasks (bench/variants/schedule.hpp).
struct Parallel {
    Schedule schedule = Schedule::serial;
    std::size_t task_elems = 1 << 14;  // elements per TBB task, at least: the grain of both schedules
};

std::string_view name(Algorithm a);
std::string_view name(Schedule s);
std::string_view name(Code c);

// Instantiated for (T, Acc) = (float, float), (float, double) and (double, double).

template <class T, class Acc>
Moments batch_stats(const ChannelShape& shape, const T* x, Algorithm algorithm, Code code, const Parallel& parallel);

template <class T, class Acc>
Moments forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, double eps, T* y,
                      Algorithm algorithm, Code code, const Parallel& parallel);

// Writes dx, dgamma and dbeta (none may be null) from the forward's `moments`.
template <class T, class Acc>
void backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const Moments& moments,
                    double eps, T* dx, T* dgamma, T* dbeta, Code code, const Parallel& parallel);

template <class T>
void forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, const T* running_mean,
                  const T* running_var, double eps, T* y, Code code, const Parallel& parallel);

// The same kernels over NHWC data, element (n, c, s) at (n·S + s)·C + c: per-channel sums are
// vector accumulators across a row's C contiguous channels. Two-pass statistics, plain loops.
namespace nhwc {

template <class T, class Acc>
Moments forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, double eps, T* y,
                      const Parallel& parallel);

template <class T, class Acc>
void backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const Moments& moments,
                    double eps, T* dx, T* dgamma, T* dbeta, const Parallel& parallel);

template <class T>
void forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, const T* running_mean,
                  const T* running_var, double eps, T* y, const Parallel& parallel);

}  // namespace nhwc

// xt::mean and xt::variance over axes {0, 2} of an xt::adapt view, and xtensor expressions for y
// and dx: serial, accumulating in T as xtensor's reducers do by default. Instantiated for float
// and double.
namespace xtensor {

template <class T>
Moments forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, double eps, T* y);

template <class T>
void backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const Moments& moments,
                    double eps, T* dx, T* dgamma, T* dbeta);

template <class T>
void forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, const T* running_mean,
                  const T* running_var, double eps, T* y);

}  // namespace xtensor

}  // namespace bn_variants
