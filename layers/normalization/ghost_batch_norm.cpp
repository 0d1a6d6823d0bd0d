#include "layers/normalization/ghost_batch_norm.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "autodiff/grad_write.hpp"
#include "layers/normalization/normalize.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

namespace {

// One virtual batch: samples [first, first + samples) of the batch.
struct Chunk {
    std::size_t first;
    std::size_t samples;
};

// torch.split's chunks of `size` samples, the last one smaller when size does not divide n.
std::vector<Chunk> split(std::size_t n, std::size_t size) {
    std::vector<Chunk> chunks;
    for (std::size_t first = 0; first < n; first += size) chunks.push_back({first, std::min(size, n - first)});
    return chunks;
}

// A chunk of the (N, C, S) batch: BatchNorm's grouping of its (samples, C, S) values, which start
// offset(batch, chunk) elements into the batch's.
Grouping chunk_grouping(const ChannelShape& batch, const Chunk& chunk) {
    return Grouping::per_channel(ChannelShape{chunk.samples, batch.c, batch.s});
}

std::size_t offset(const ChannelShape& batch, const Chunk& chunk) { return chunk.first * batch.c * batch.s; }

}  // namespace

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
    const std::vector<Chunk> chunks = split(sh.n, virtual_batch_);
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
    NormalizeOptions<T> options;
    options.eps = this->options().eps;
    options.gamma = weight ? weight->value().data() : nullptr;
    options.beta = bias ? bias->value().data() : nullptr;
    T* running_mean = this->running_mean_buffer()->data();
    T* running_var = this->running_var_buffer()->data();
    std::int64_t& tracked = *this->batches_tracked();
    xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
    std::vector<NormalizedBatch> batches;
    for (const Chunk& chunk : chunks) {
        // Moved chunk by chunk, each chunk counted as a batch.
        options.running = RunningStats<T>{running_mean, running_var, this->running_factor(tracked + 1)};
        batches.push_back(normalize_batch(chunk_grouping(sh, chunk), x.value().data() + offset(sh, chunk), options,
                                          NoEpilogue{}, y.data() + offset(sh, chunk)));
        ++tracked;
    }

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
            // Each chunk's dgamma and dbeta, added over the chunks in double, in chunk order.
            std::vector<T> chunk_dgamma(dgamma.data() ? sh.c : 0), chunk_dbeta(dbeta.data() ? sh.c : 0);
            std::vector<double> sum_dgamma(chunk_dgamma.size()), sum_dbeta(chunk_dbeta.size());
            const T* gamma = gn ? gn->value.data() : nullptr;
            const T* beta = bn ? bn->value.data() : nullptr;
            for (std::size_t k = 0; k < chunks.size(); ++k) {
                const std::size_t at = offset(sh, chunks[k]);
                const NormalizeGrads<T> grads{dx.data() ? dx.data() + at : nullptr,
                                              chunk_dgamma.empty() ? nullptr : chunk_dgamma.data(),
                                              chunk_dbeta.empty() ? nullptr : chunk_dbeta.data()};
                normalize_backward(chunk_grouping(sh, chunks[k]), batches[k], GradientThrough::batch(),
                                   grad_out.data() + at, xn->value.data() + at, gamma, beta, NoEpilogue{}, grads);
                for (std::size_t c = 0; c < sum_dgamma.size(); ++c) sum_dgamma[c] += static_cast<double>(chunk_dgamma[c]);
                for (std::size_t c = 0; c < sum_dbeta.size(); ++c) sum_dbeta[c] += static_cast<double>(chunk_dbeta[c]);
            }
            for (std::size_t c = 0; c < sum_dgamma.size(); ++c) dgamma.data()[c] = static_cast<T>(sum_dgamma[c]);
            for (std::size_t c = 0; c < sum_dbeta.size(); ++c) dbeta.data()[c] = static_cast<T>(sum_dbeta[c]);
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
