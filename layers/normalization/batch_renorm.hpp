// Batch Renormalization (Ioffe 2017): BatchNorm whose training output is pulled towards what the
// running statistics would give, so that training and inference agree for small or non-i.i.d.
// batches. In training, per channel, with the running statistics as they were before this batch,
//   r = clip(sigma_B / sigma, 1/rmax, rmax),  d = clip((mu_B - running_mean) / sigma, -dmax, dmax),
//   sigma_B = sqrt(var_B + eps),  sigma = sqrt(running_var + eps),
//   y = weight·((x - mu_B) / sigma_B · r + d) + bias,
// r and d constants of the backward (the gradient flows through mu_B and sigma_B only). Eval is
// BatchNorm's eval with the running statistics.
//
// The running statistics move exactly as BatchNorm's (running = (1 - m)·running + m·batch, the
// unbiased batch variance): the variance is averaged, not sigma. The paper moves sigma; averaging
// the variance instead keeps BatchNorm's buffers and their meaning, so a Batch Renorm model's
// state_dict loads into torch's BatchNorm for inference and PreciseBN recalibrates it like any
// BatchNorm (sigma = sqrt(running_var + eps) differs from a moved sigma only by the averages'
// Jensen gap, of the order of the batch variances' spread). The layer is a BatchNorm<T>, with its
// parameters, buffers and names (weight, bias, running_mean, running_var, num_batches_tracked);
// num_batches_tracked is the schedule's step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/renorm_limits.hpp"

namespace xgrad {

// The paper's schedule of the limits (section 4): rmax and dmax keep their start values (1 and 0,
// which is BatchNorm) while the step is below relax_from, then each moves linearly to its final
// value, reached at its own step, and stays there. Defaults are the paper's.
struct RenormSchedule {
    double rmax_start = 1.0;
    double dmax_start = 0.0;
    std::int64_t relax_from = 5000;
    double rmax_final = 3.0;
    std::int64_t rmax_final_at = 40000;
    double dmax_final = 5.0;
    std::int64_t dmax_final_at = 25000;

    // The limits at `step`, the number of batches trained before.
    RenormLimits at(std::int64_t step) const;
    // A std::invalid_argument starting with `where` unless every rmax >= 1, every dmax >= 0 (both
    // finite), 0 <= relax_from <= each final step.
    void check(const std::string& where) const;
};

struct BatchRenormOptions {
    double eps = 1e-5;
    double momentum = 0.01;
    bool affine = true;
    RenormSchedule schedule = {};
};

template <class T>
class BatchRenorm : public BatchNorm<T> {
public:
    // "BatchRenorm2d(6, eps=1e-05, momentum=0.01, affine=True, rmax=1->3 over steps 5000-40000,
    // dmax=0->5 over steps 5000-25000)".
    std::string describe() const override;
    const RenormSchedule& schedule() const { return schedule_; }
    // The limits the next training batch will use.
    RenormLimits limits() const { return schedule_.at(*this->num_batches_tracked()); }

protected:
    BatchRenorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                std::size_t num_features, const BatchRenormOptions& options);
    std::optional<RenormLimits> renorm_limits(std::int64_t step) const override { return schedule_.at(step); }

private:
    RenormSchedule schedule_;
};

// Over (N, C), statistics per feature, or over (N, C, L), per channel.
template <class T>
class BatchRenorm1d final : public BatchRenorm<T> {
public:
    explicit BatchRenorm1d(std::size_t num_features, const BatchRenormOptions& options = {})
        : BatchRenorm<T>("BatchRenorm1d", {2, 3}, "(N, C) or (N, C, L)", num_features, options) {}
};

// Over (N, C, H, W), statistics per channel.
template <class T>
class BatchRenorm2d final : public BatchRenorm<T> {
public:
    explicit BatchRenorm2d(std::size_t num_features, const BatchRenormOptions& options = {})
        : BatchRenorm<T>("BatchRenorm2d", {4}, "(N, C, H, W)", num_features, options) {}
};

extern template class BatchRenorm<float>;
extern template class BatchRenorm<double>;

}  // namespace xgrad
