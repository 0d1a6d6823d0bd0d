#include "autodiff/fused_node.hpp"

#include <xtensor/xreducer.hpp>

namespace xgrad::detail {

namespace {

// The axes along which a gradient of shape `from` must be summed to get shape `to`
// (numpy broadcasting in reverse).
std::vector<std::size_t> broadcast_axes(const Shape& from, const Shape& to) {
    std::vector<std::size_t> axes;
    const std::size_t lead = from.size() - to.size();
    for (std::size_t i = 0; i < from.size(); ++i) {
        if (i < lead || (to[i - lead] == 1 && from[i] != 1)) axes.push_back(i);
    }
    return axes;
}

}  // namespace

template <class T>
void accumulate_summed(Node<T>& leaf, xt::xarray<T>&& full, const Shape& out_shape) {
    const Shape leaf_shape = to_shape(leaf.value.shape());
    if (leaf_shape == out_shape) {
        accumulate_grad(leaf, std::move(full));
        return;
    }
    xt::xarray<T> summed = xt::sum(full, broadcast_axes(out_shape, leaf_shape));
    summed.reshape(leaf_shape);
    accumulate_grad(leaf, std::move(summed));
}

template void accumulate_summed(Node<float>&, xt::xarray<float>&&, const Shape&);
template void accumulate_summed(Node<double>&, xt::xarray<double>&&, const Shape&);

}  // namespace xgrad::detail
