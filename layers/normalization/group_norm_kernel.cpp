#include "layers/normalization/group_norm_kernel.hpp"

#include <stdexcept>

#include "layers/normalization/elementwise_affine.hpp"
#include "layers/normalization/runs.hpp"

namespace xgrad {

namespace {

// Each (n, g) one row of (C/G)·S elements: a sample's groups as LayerNorm's samples.
Grouping rows_per_group(const ChannelShape& shape, std::size_t groups) {
    return Grouping::per_row(shape.n * groups, shape.c / groups * shape.s);
}

template <class T>
void check_affine(const T* gamma, const T* beta) {
    if ((gamma == nullptr) != (beta == nullptr)) {
        throw std::invalid_argument("GroupNorm kernels: gamma and beta are both given or both null");
    }
}

// f(epilogue) with the rows-per-group walk's epilogue: gamma and beta elementwise, or none.
template <class T, class F>
decltype(auto) with_epilogue(const ChannelShape& shape, std::size_t groups, const T* gamma, const T* beta, const F& f) {
    if (!gamma) return f(NoEpilogue{});
    return f(ElementwiseAffineEpilogue<T>::per_channel(gamma, beta, shape, groups));
}

}  // namespace

bool group_norm_rows_per_group(const ChannelShape& shape, std::size_t groups) {
    using normalization_detail::kShortRun;
    if (groups == 0 || shape.s == 0 || shape.s >= kShortRun) return false;
    // Shorter groups stay on per-(n, c) rows: at S = 1, where those merge into whole samples
    // (runs.hpp), GroupNorm(25, 100) at (60, 100), groups of 4, took 1.45x as long by rows per
    // group (bench/RESULTS.md); 1 < S < kShortRun with groups shorter than kShortRun is not measured.
    return shape.c / groups > 1 && shape.c / groups * shape.s >= kShortRun;
}

template <class T>
NormalizedBatch group_norm_forward(const ChannelShape& shape, std::size_t groups, const T* x, const T* gamma,
                                   const T* beta, double eps, T* y) {
    check_affine(gamma, beta);
    const Grouping grouping = Grouping::per_sample(shape, groups);  // checks the groups
    NormalizeOptions<T> options;
    options.eps = eps;
    if (!group_norm_rows_per_group(shape, groups)) {
        options.gamma = gamma;
        options.beta = beta;
        return normalize_batch(grouping, x, options, NoEpilogue{}, y);
    }
    const Grouping rows = rows_per_group(shape, groups);
    return with_epilogue(shape, groups, gamma, beta,
                         [&](const auto& epilogue) { return normalize_batch(rows, x, options, epilogue, y); });
}

template <class T>
void group_norm_backward(const ChannelShape& shape, std::size_t groups, const NormalizedBatch& batch, const T* dy,
                         const T* x, const T* gamma, const T* beta, const NormalizeGrads<T>& grads) {
    check_affine(gamma, beta);
    const Grouping grouping = Grouping::per_sample(shape, groups);
    const GradientThrough through = GradientThrough::batch();
    if (!group_norm_rows_per_group(shape, groups)) {
        normalize_backward(grouping, batch, through, dy, x, gamma, beta, NoEpilogue{}, grads);
        return;
    }
    if (grads.dx) {
        const Grouping rows = rows_per_group(shape, groups);
        with_epilogue(shape, groups, gamma, beta, [&](const auto& epilogue) {
            normalize_backward<T>(rows, batch, through, dy, x, nullptr, nullptr, epilogue,
                                  NormalizeGrads<T>{grads.dx, nullptr, nullptr});
        });
    }
    elementwise_affine_backward(shape, groups, batch.norm, dy, x, grads.dgamma, grads.dbeta);
}

template NormalizedBatch group_norm_forward(const ChannelShape&, std::size_t, const float*, const float*,
                                            const float*, double, float*);
template NormalizedBatch group_norm_forward(const ChannelShape&, std::size_t, const double*, const double*,
                                            const double*, double, double*);
template void group_norm_backward(const ChannelShape&, std::size_t, const NormalizedBatch&, const float*,
                                  const float*, const float*, const float*, const NormalizeGrads<float>&);
template void group_norm_backward(const ChannelShape&, std::size_t, const NormalizedBatch&, const double*,
                                  const double*, const double*, const double*, const NormalizeGrads<double>&);

}  // namespace xgrad
