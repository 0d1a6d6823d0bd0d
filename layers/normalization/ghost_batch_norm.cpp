#include "layers/normalization/ghost_batch_norm.hpp"

#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "autodiff/grad_write.hpp"
#include "layers/normalization/ghost_batch_norm_kernel.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

template <class T>
GhostBatchNorm<T>::GhostBatchNorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                                  std::size_t num_features, std::size_t virtual_batch,
                                  const GhostBatchNormOptions& options)
    : BatchNorm<T>(kind, ranks, layout, num_features,
                   BatchNormOptions{.eps = options.eps, .momentum = options.momentum, .affine = options.affine,
                                    .track_running_stats = true}),
      virtual_batch_(virtual_batch) {
    if (virtual_batch == 0) throw std::invalid_argument(std::string(kind) + ": expected virtual_batch >= 1, got 0");
}

template <class T>
Var<T> GhostBatchNorm<T>::forward(const Var<T>& x) {
    if (!this->is_training()) return BatchNorm<T>::forward(x);
    const Shape shape = x.shape();
    this->check_input(shape);
    const ChannelShape sh = channel_shape(shape);
    const std::vector<VirtualBatch> chunks = virtual_batches(sh.n, virtual_batch_);
    if (chunks.empty()) {
        throw ShapeError(this->where() + ": expected at least one sample in training, got input " + shape_str(shape));
    }
    for (std::size_t k = 0; k < chunks.size(); ++k) {
        const std::size_t values = chunks[k].samples * sh.s;
        if (values <= 1) {
            throw ShapeError(this->where() + ": virtual batch " + std::to_string(k + 1) + " of " +
                             std::to_string(chunks.size()) + " (samples " + std::to_string(chunks[k].first) + " to " +
                             std::to_string(chunks[k].first + chunks[k].samples - 1) + ") has " +
                             std::to_string(values) + (values == 1 ? " value" : " values") +
                             " per channel; expected more than 1 value per channel when training, got input " +
                             shape_str(shape) + " split by virtual_batch=" + std::to_string(virtual_batch_));
        }
    }

    const std::optional<Var<T>>& weight = this->weight();
    const std::optional<Var<T>>& bias = this->bias();
    const T* gamma = weight ? weight->value().data() : nullptr;
    const T* beta = bias ? bias->value().data() : nullptr;
    std::int64_t& tracked = *this->batches_tracked();
    ChunkRunningStats<T> running{this->running_mean_buffer()->data(), this->running_var_buffer()->data(), {}};
    // Each chunk counted as a batch.
    for (std::size_t k = 0; k < chunks.size(); ++k) {
        running.factors.push_back(this->running_factor(tracked + 1 + static_cast<std::int64_t>(k)));
    }
    xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
    std::vector<NormalizedBatch> batches =
        ghost_batch_norm_forward(sh, chunks, x.value().data(), gamma, beta, this->options().eps, running, y.data());
    tracked += static_cast<std::int64_t>(chunks.size());

    using NodePtr = typename Var<T>::NodePtr;
    const NodePtr xn = x.node();
    const NodePtr gn = weight ? weight->node() : nullptr;
    const NodePtr bn = bias ? bias->node() : nullptr;
    std::vector<NodePtr> inputs{xn};
    for (const NodePtr& p : {gn, bn}) {
        if (p) inputs.push_back(p);
    }
    return Var<T>::from_op(
        std::move(y), "ghost_batch_norm", std::move(inputs),
        [xn, gn, bn, sh, chunks, batches = std::move(batches)](const Node<T>&, const xt::xarray<T>& grad_out) {
            GradWrite<T> dx(xn), dgamma(gn), dbeta(bn);
            ghost_batch_norm_backward(sh, chunks, batches, grad_out.data(), xn->value.data(),
                                      gn ? gn->value.data() : nullptr, bn ? bn->value.data() : nullptr,
                                      NormalizeGrads<T>{dx.data(), dgamma.data(), dbeta.data()});
            dx.commit();
            dgamma.commit();
            dbeta.commit();
        });
}

template <class T>
std::string GhostBatchNorm<T>::describe() const {
    const BatchNormOptions& o = this->options();
    return std::string(this->kind()) + "(" + std::to_string(this->num_features()) +
           ", virtual_batch=" + std::to_string(virtual_batch_) + ", eps=" + python_float(o.eps) +
           ", momentum=" + (o.momentum ? python_float(*o.momentum) : "None") + ", affine=" + python_bool(o.affine) + ")";
}

template class GhostBatchNorm<float>;
template class GhostBatchNorm<double>;

}  // namespace xgrad
