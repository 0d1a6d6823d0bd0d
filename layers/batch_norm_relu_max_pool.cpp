#include "layers/batch_norm_relu_max_pool.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/grad_write.hpp"
#include "layers/normalized_max_pool.hpp"
#include "layers/window.hpp"

namespace xgrad {

namespace {

// The arrays of PooledArgMax, owned by the node for its backward; left uninitialized, as the
// forward writes each (a fill would be one more pass). The non-finite flags only with running
// statistics (normalized_max_pool.hpp).
template <class T>
struct PooledArgMaxStorage {
    std::shared_ptr<std::uint32_t[]> index;
    std::shared_ptr<T[]> x;
    std::shared_ptr<bool[]> nonfinite_elsewhere;

    PooledArgMaxStorage(const WindowGeometry& g, bool training)
        : index(std::make_shared_for_overwrite<std::uint32_t[]>(g.n * g.c * g.out_plane())),
          x(std::make_shared_for_overwrite<T[]>(g.n * g.c * g.out_plane())),
          nonfinite_elsewhere(training ? nullptr : std::make_shared_for_overwrite<bool[]>(g.n * g.c)) {}
    PooledArgMax<T> view() const { return {index.get(), x.get(), nonfinite_elsewhere.get()}; }
};

}  // namespace

template <class T>
Var<T> batch_norm_relu_max_pool2d(const Var<T>& x, const BatchNormArgs<T>& args, std::string_view where) {
    const std::string who(where);
    const Shape shape = x.shape();
    const NormalizeOptions<T> options = checked_batch_norm_options(shape, args, who);
    const WindowGeometry g = pooling_geometry(who, shape, Size2(2), Size2(2));
    const Grouping grouping = Grouping::per_channel(channel_shape(shape));
    const ChannelShape view = grouping.row_view();
    const Rows channels = Rows::all(g.c);
    xt::xarray<T> y = xt::xarray<T>::from_shape({g.n, g.c, g.oh, g.ow});
    const PooledArgMaxStorage<T> at_max(g, args.training);
    const T* xv = x.value().data();
    const auto pool = [&](const Affine<T>& a, const Rows& rows) {
        relu_max_pool_forward(g, a, xv, y.data(), at_max.view(), rows);
    };
    NormalizedBatch batch;
    if (args.training) {
        // Per element, the pass reads x and writes a quarter of one of each of y, x_at_max and
        // argmax: as an elementwise pass (x in, y out) counts for its block.
        batch = normalize_batch_by_blocks<T>(grouping, xv, options, 2 * sizeof(T), pool);
    } else {
        batch.norm = running_normalization(args.running_mean->data(), args.running_var->data(), g.c, args.eps);
        Affine<T> coefficients(view);
        fold_forward(grouping, batch.norm, options.gamma, options.beta, nullptr, channels, coefficients);
        pool(coefficients, channels);
    }

    using NodePtr = typename Var<T>::NodePtr;
    const NodePtr xn = x.node();
    const NodePtr gn = args.weight ? args.weight->node() : nullptr;
    const NodePtr bn = args.bias ? args.bias->node() : nullptr;
    std::vector<NodePtr> inputs{xn};
    if (gn) inputs.push_back(gn);
    if (bn) inputs.push_back(bn);
    const GradientThrough through = args.training ? GradientThrough::batch() : GradientThrough::constants();
    return Var<T>::from_op(
        std::move(y), "batch_norm_relu_max_pool2d", std::move(inputs),
        [xn, gn, bn, g, grouping, channels, through, batch = std::move(batch),
         at_max](const Node<T>& pooled, const xt::xarray<T>& grad_out) {
            GradWrite<T> dx(xn), dgamma(gn), dbeta(bn);
            const T* gy = grad_out.data();
            const T* xv = xn->value.data();
            const T* y = pooled.value.data();
            const bool sums_wanted = through.mean || through.variance || dgamma.data() || dbeta.data();
            std::vector<std::array<double, 2>> sums;
            if (sums_wanted) sums = relu_max_pool_backward_sums(g, batch.norm.mean, y, at_max.view(), gy);
            std::optional<InputGrad<T>> input_grad;
            if (dx.data()) {
                input_grad.emplace(grouping.row_view());
                input_grad->x_term = through.mean || through.variance;
            }
            std::vector<double> row_dgamma(dgamma.data() ? g.c : 0), row_dbeta(dbeta.data() ? g.c : 0);
            fold_backward<T, 2>(grouping, batch.norm, gn ? gn->value.data() : nullptr,
                                batch.renorm ? &*batch.renorm : nullptr, through,
                                std::span<const std::array<double, 2>>(sums), channels,
                                input_grad ? &*input_grad : nullptr, row_dgamma, row_dbeta);
            if (input_grad) relu_max_pool_backward(g, *input_grad, y, at_max.view(), gy, xv, dx.data());
            for (std::size_t c = 0; c < g.c; ++c) {
                if (T* out = dgamma.data()) out[c] = static_cast<T>(row_dgamma[c]);
                if (T* out = dbeta.data()) out[c] = static_cast<T>(row_dbeta[c]);
            }
            dx.commit();
            dgamma.commit();
            dbeta.commit();
        });
}

template Var<float> batch_norm_relu_max_pool2d(const Var<float>&, const BatchNormArgs<float>&, std::string_view);
template Var<double> batch_norm_relu_max_pool2d(const Var<double>&, const BatchNormArgs<double>&, std::string_view);
template class BatchNormReLUMaxPool2d<float>;
template class BatchNormReLUMaxPool2d<double>;

}  // namespace xgrad
