// Stage 2 of every normalization: the statistics and gamma/beta folded into per-row coefficients
// (coefficients.hpp), one function per mode of normalization, in double; and, for the backward,
// the per-row sums of stage 4 (backward_sums.hpp) folded into the parameter gradients and the
// input gradient's coefficients.
//
// A forward normalizes x of group g and channel c as
//   y = gamma_c·((x - mean_g)·invstd_g·r_c + d_c) + beta_c
// with r = 1, d = 0 except in Batch Renorm. The modes differ in where mean and invstd come from:
//   batch statistics      mean and 1/sqrt(var + eps) of the batch (BN, GroupNorm, InstanceNorm, LayerNorm)
//   running statistics    the running mean and 1/sqrt(running_var + eps) (BN's eval)
//   Batch Renorm          the batch's, with r and d from the running statistics (renorm_correction)
//   FilterResponseNorm    mean 0 and 1/sqrt(ν² + eps), ν² the mean of x² (no centring)
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "layers/normalization/coefficients.hpp"
#include "layers/normalization/grouping.hpp"
#include "layers/normalization/renorm_limits.hpp"
#include "layers/normalization/statistics.hpp"

namespace xgrad {

// Per group: what a forward normalized with, and so what its backward needs.
struct Normalization {
    std::vector<double> mean;
    std::vector<double> invstd;
};

// 1/sqrt(var + eps); inline, so that a loop over groups vectorizes it.
inline double inverse_std(double var, double eps) { return 1.0 / std::sqrt(var + eps); }
template <class T>
Normalization running_normalization(const T* running_mean, const T* running_var, std::size_t channels, double eps);

// Batch Renorm (Ioffe 2017), per channel: r = clip(sigma_B/sigma, 1/rmax, rmax) and
// d = clip((mean_B - running_mean)/sigma, -dmax, dmax), sigma_B = 1/batch.invstd and
// sigma = sqrt(running_var + eps). Constants of the backward.
struct RenormCorrection {
    std::vector<double> r;
    std::vector<double> d;
};
// Writes r and d of the channels of `channels` into out (one entry per channel).
template <class T>
void renorm_correction(const Normalization& batch, const T* running_mean, const T* running_var, double eps,
                       const RenormLimits& limits, const Rows& channels, RenormCorrection& out);

// The forward's coefficients of the rows of `rows` (whole groups). gamma and beta have one value per
// channel; null stands for 1 and 0. `renorm` null: r = 1, d = 0.
template <class T>
void fold_forward(const Grouping& grouping, const Normalization& norm, const T* gamma, const T* beta,
                  const RenormCorrection* renorm, const Rows& rows, Affine<T>& out);

// Which statistics the gradient flows through: both in training (batch statistics), neither in
// eval (running statistics), the variance alone for FilterResponseNorm's ν².
struct GradientThrough {
    bool mean;
    bool variance;
    static GradientThrough batch() { return {true, true}; }
    static GradientThrough constants() { return {false, false}; }
    static GradientThrough mean_square() { return {false, true}; }
};

// From the per-row sums {Σg, Σg·(x - mean_g), ...} of the rows of `rows` (whole groups; empty when
// neither the statistics' gradients nor dgamma and dbeta are wanted), g the
// output gradient through the epilogue's derivative: writes each row's share of dgamma and dbeta
// (double, one entry per row; empty: not wanted) and, if dx is not null, dx's
// coefficients: dx = alpha·(g - Σg/n - x̂·Σ(g·x̂)/n) for batch statistics, where x̂ = (x - mean)·invstd
// and alpha = gamma·invstd·r (the sums over a group weighted by its channels' gamma·r), regrouped
// around the centre; alpha·g alone for constants (k and shift 0; dx->x_term, whether x is read
// at all, is the caller's to set once for all the rows).
template <class T, std::size_t K>
void fold_backward(const Grouping& grouping, const Normalization& norm, const T* gamma, const RenormCorrection* renorm,
                   GradientThrough through, std::span<const std::array<double, K>> row_sums, const Rows& rows,
                   InputGrad<T>* dx, std::span<double> row_dgamma, std::span<double> row_dbeta);

}  // namespace xgrad
