// The graph node of every normalization layer: the output its forward computed (normalize.hpp),
// and a backward that runs the backward stages into the gradients of x, gamma, beta and the
// epilogue's parameter (TLU's tau), each written or added by the one rule of GradWrite. The stages
// are normalize_backward's, or a layer's own composition of them (SyncBatchNorm's, with an
// all-reduce between the sums and the input gradient).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/grad_write.hpp"
#include "autodiff/var.hpp"
#include "layers/normalization/normalize.hpp"

namespace xgrad {

template <class T>
struct NormalizationParameters {
    std::optional<Var<T>> weight;     // gamma, one per channel; absent: 1
    std::optional<Var<T>> bias;       // beta; absent: 0
    std::optional<Var<T>> epilogue;   // the epilogue's parameter, one per channel (TLU's tau)
};

// normalize_backward as a callable: the backward of every layer that normalizes in one process.
struct LocalBackward {
    template <class T, class Epilogue>
    std::vector<std::array<double, Epilogue::extra_sums>> operator()(const Grouping& grouping, const NormalizedBatch& batch,
                                                                     GradientThrough through, const T* dy, const T* x,
                                                                     const T* gamma, const T* beta, const Epilogue& epilogue,
                                                                     const NormalizeGrads<T>& grads) const {
        return normalize_backward(grouping, batch, through, dy, x, gamma, beta, epilogue, grads);
    }
};

// y is the forward's output for x, normalized as `batch` says over `grouping`; `backward` takes
// normalize_backward's arguments.
template <class T, class Epilogue, class Backward = LocalBackward>
Var<T> normalization_node(const char* op, const Var<T>& x, xt::xarray<T> y, const Grouping& grouping,
                          NormalizedBatch batch, GradientThrough through, const NormalizationParameters<T>& params,
                          Epilogue epilogue, Backward backward = {}) {
    using NodePtr = typename Var<T>::NodePtr;
    const NodePtr xn = x.node();
    const NodePtr gn = params.weight ? params.weight->node() : nullptr;
    const NodePtr bn = params.bias ? params.bias->node() : nullptr;
    const NodePtr en = params.epilogue ? params.epilogue->node() : nullptr;
    std::vector<NodePtr> inputs{xn};
    for (const NodePtr& p : {gn, bn, en}) {
        if (p) inputs.push_back(p);
    }
    return Var<T>::from_op(
        std::move(y), op, std::move(inputs),
        [xn, gn, bn, en, grouping, batch = std::move(batch), through, epilogue = std::move(epilogue),
         backward = std::move(backward)](const Node<T>&, const xt::xarray<T>& grad_out) {
            GradWrite<T> dx(xn), dgamma(gn), dbeta(bn);
            const auto extras = backward(grouping, batch, through, grad_out.data(), xn->value.data(),
                                         gn ? gn->value.data() : nullptr, bn ? bn->value.data() : nullptr, epilogue,
                                         NormalizeGrads<T>{dx.data(), dgamma.data(), dbeta.data()});
            dx.commit();
            dgamma.commit();
            dbeta.commit();
            if constexpr (Epilogue::extra_sums > 0) {
                GradWrite<T> dparam(en);
                if (T* out = dparam.data()) {
                    for (std::size_t c = 0; c < extras.size(); ++c) out[c] = static_cast<T>(extras[c][0]);
                }
                dparam.commit();
            }
        });
}

}  // namespace xgrad
