#include "layers/normalization/normalize.hpp"

#include <span>
#include <stdexcept>
#include <utility>

#include "layers/normalization/backward_sums.hpp"
#include "layers/normalization/blocked.hpp"
#include "layers/normalization/elementwise.hpp"
#include "layers/normalization/elementwise_affine.hpp"

namespace xgrad {

using normalization_detail::for_each_group_block;
using normalization_detail::rows_of;

template <class T>
NormalizedBatch normalize_batch_by_blocks(const Grouping& grouping, const T* x, const NormalizeOptions<T>& options,
                                          std::size_t bytes_per_element, const BlockApply<T>& apply) {
    if (options.renorm && (!options.running || !grouping.is_per_channel())) {
        throw std::invalid_argument("normalization: Batch Renorm needs running statistics per channel");
    }
    if (options.running && options.centring != Centring::mean) {
        throw std::invalid_argument("normalization: running statistics are means and variances of centred data");
    }
    const std::size_t groups = grouping.groups();
    const double n = static_cast<double>(grouping.group_size());
    Moments moments{std::vector<double>(groups), std::vector<double>(groups)};
    NormalizedBatch out{{std::vector<double>(groups), std::vector<double>(groups)}, std::nullopt};
    if (options.renorm) out.renorm = RenormCorrection{std::vector<double>(groups), std::vector<double>(groups)};
    Affine<T> coefficients(grouping.row_view());
    for_each_group_block(grouping, bytes_per_element, [&](const Rows& block) {
        if (options.centring == Centring::mean) {
            group_moments(grouping, x, block, moments);
        } else {
            group_squares(grouping, x, block, std::span<double>(moments.var));
            for (std::size_t g = block.begin; g < block.end; ++g) moments.var[g] /= n;
        }
        for (std::size_t g = block.begin; g < block.end; ++g) {
            out.norm.mean[g] = moments.mean[g];
            out.norm.invstd[g] = inverse_std(moments.var[g], options.eps);
        }
        if (out.renorm) {
            renorm_correction(out.norm, options.running->mean, options.running->var, options.eps, *options.renorm, block,
                              *out.renorm);
        }
        const Rows rows = rows_of(grouping, block);
        fold_forward(grouping, out.norm, options.gamma, options.beta, out.renorm ? &*out.renorm : nullptr, rows,
                     coefficients);
        apply(coefficients, rows);
    });
    // After the walk: Batch Renorm's r and d read the running statistics as they were before.
    if (options.running) move_running_statistics(grouping, moments, Rows::all(groups), *options.running);
    if (options.moments) *options.moments = std::move(moments);
    return out;
}

template <class T, class Epilogue>
NormalizedBatch normalize_batch(const Grouping& grouping, const T* x, const NormalizeOptions<T>& options,
                                const Epilogue& epilogue, T* y) {
    const ChannelShape view = grouping.row_view();
    return normalize_batch_by_blocks<T>(grouping, x, options, 2 * sizeof(T), [&](const Affine<T>& a, const Rows& rows) {
        apply_forward(view, a, epilogue, x, y, rows);
    });
}

template <class T, class Epilogue>
void normalize_with(const Grouping& grouping, const Normalization& norm, const T* x, const NormalizeOptions<T>& options,
                    const Epilogue& epilogue, T* y) {
    const ChannelShape view = grouping.row_view();
    Affine<T> coefficients(view);
    fold_forward(grouping, norm, options.gamma, options.beta, nullptr, Rows::all(view.c), coefficients);
    apply_forward(view, coefficients, epilogue, x, y, Rows::all(view.c));
}

template <class T, class Epilogue>
std::vector<std::array<double, Epilogue::extra_sums>> normalize_backward(
    const Grouping& grouping, const NormalizedBatch& batch, GradientThrough through, const T* dy, const T* x,
    const T* gamma, const T* beta, const Epilogue& epilogue, const NormalizeGrads<T>& grads) {
    constexpr std::size_t K = 2 + Epilogue::extra_sums;
    const ChannelShape view = grouping.row_view();
    const std::size_t rows = view.c;
    const std::size_t channels = grouping.shape().c;
    const bool sums_wanted = through.mean || through.variance || grads.dgamma || grads.dbeta || K > 2;
    // A row's group's mean: the means themselves where a row is its group (a loop per group to
    // copy them took a third of this function's own time in Ghost BN's backward at (64, 512)).
    // Rows and channels counted rather than divided, here and below: a division per row costs a
    // few percent of a per-channel backward at S = 1.
    std::vector<double> repeated_means;
    if (grouping.rows_per_group() > 1) {
        repeated_means.resize(rows);
        for (std::size_t g = 0, r = 0; r < rows; ++g) {
            for (std::size_t i = 0; i < grouping.rows_per_group(); ++i) repeated_means[r++] = batch.norm.mean[g];
        }
    }
    const std::span<const double> row_mean(grouping.rows_per_group() > 1 ? repeated_means : batch.norm.mean);
    std::vector<RowSums<Epilogue>> sums(sums_wanted ? rows : 0);
    std::vector<double> row_dgamma(grads.dgamma ? rows : 0);
    std::vector<double> row_dbeta(grads.dbeta ? rows : 0);
    std::optional<Affine<T>> forward;
    if (Epilogue::gate_reads_value) forward.emplace(view);
    std::optional<InputGrad<T>> input_grad;
    if (grads.dx) {
        input_grad.emplace(view);
        // Here, not in fold_backward: the blocks below run in parallel and all read it.
        input_grad->x_term = through.mean || through.variance;
    }
    const RenormCorrection* renorm = batch.renorm ? &*batch.renorm : nullptr;

    for_each_group_block(grouping, 3 * sizeof(T), [&](const Rows& block) {
        const Rows r = rows_of(grouping, block);
        if (forward) fold_forward(grouping, batch.norm, gamma, beta, renorm, r, *forward);
        const Affine<T>* fwd = forward ? &*forward : nullptr;
        if (sums_wanted) backward_sums(view, row_mean, fwd, epilogue, dy, x, r, std::span(sums));
        fold_backward<T, K>(grouping, batch.norm, gamma, renorm, through, std::span<const RowSums<Epilogue>>(sums), r,
                            input_grad ? &*input_grad : nullptr, row_dgamma, row_dbeta);
        if (input_grad) apply_backward(view, *input_grad, fwd, epilogue, dy, x, grads.dx, r);
    });

    // Per channel, the rows' shares in row order: the same bits whatever the blocks were.
    std::vector<double> dgamma(channels), dbeta(channels);
    std::vector<std::array<double, Epilogue::extra_sums>> extras(channels);
    for (std::size_t r = 0; r < rows;) {
        for (std::size_t c = 0; c < channels; ++c, ++r) {  // rows are (n, c), n major
            if (grads.dgamma) dgamma[c] += row_dgamma[r];
            if (grads.dbeta) dbeta[c] += row_dbeta[r];
            for (std::size_t e = 0; e < Epilogue::extra_sums; ++e) extras[c][e] += sums[r][2 + e];
        }
    }
    for (std::size_t c = 0; c < channels; ++c) {
        if (grads.dgamma) grads.dgamma[c] = static_cast<T>(dgamma[c]);
        if (grads.dbeta) grads.dbeta[c] = static_cast<T>(dbeta[c]);
    }
    return extras;
}

#define XGRAD_NORMALIZE(T, E)                                                                                     \
    template NormalizedBatch normalize_batch(const Grouping&, const T*, const NormalizeOptions<T>&, const E&, T*);   \
    template void normalize_with(const Grouping&, const Normalization&, const T*, const NormalizeOptions<T>&,      \
                                 const E&, T*);                                                                    \
    template std::vector<std::array<double, E::extra_sums>> normalize_backward(                                   \
        const Grouping&, const NormalizedBatch&, GradientThrough, const T*, const T*, const T*, const T*, const E&, \
        const NormalizeGrads<T>&);
XGRAD_NORMALIZE(float, NoEpilogue)
XGRAD_NORMALIZE(double, NoEpilogue)
XGRAD_NORMALIZE(float, ReluEpilogue)
XGRAD_NORMALIZE(double, ReluEpilogue)
XGRAD_NORMALIZE(float, TluEpilogue<float>)
XGRAD_NORMALIZE(double, TluEpilogue<double>)
XGRAD_NORMALIZE(float, ElementwiseAffineEpilogue<float>)
XGRAD_NORMALIZE(double, ElementwiseAffineEpilogue<double>)
#undef XGRAD_NORMALIZE
template NormalizedBatch normalize_batch_by_blocks(const Grouping&, const float*, const NormalizeOptions<float>&,
                                                   std::size_t, const BlockApply<float>&);
template NormalizedBatch normalize_batch_by_blocks(const Grouping&, const double*, const NormalizeOptions<double>&,
                                                   std::size_t, const BlockApply<double>&);

}  // namespace xgrad
