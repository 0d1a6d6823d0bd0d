// The state a normalization layer may hold, under torch's names (torch's _NormBase): the affine
// parameters `weight` (1) and `bias` (0), one value per channel or, for LayerNorm, of
// normalized_shape; and the running statistics `running_mean` (0) and `running_var` (1), one value
// per channel, with the counter `num_batches_tracked` (0); and further parameters of the affine
// ones' shape (FilterResponseNorm's `tau`). A layer registers what its options ask for in its
// constructor, and checks the state before its kernels read it through raw pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/var.hpp"
#include "layers/module.hpp"

namespace xgrad {

template <class T>
struct RunningStats;  // running_statistics.hpp

template <class T>
class NormalizationLayer : public Module<T> {
public:
    // Absent without affine parameters.
    const std::optional<Var<T>>& weight() const { return weight_; }
    const std::optional<Var<T>>& bias() const { return bias_; }
    // Null without running statistics.
    const xt::xarray<T>* running_mean() const { return running_mean_; }
    const xt::xarray<T>* running_var() const { return running_var_; }
    const std::int64_t* num_batches_tracked() const { return num_batches_tracked_; }

protected:
    void register_affine(const Shape& shape);
    // A further parameter of the affine parameters' shape, every value `initial`; after
    // register_affine.
    Var<T>& register_like_affine(const std::string& name, T initial);
    void register_running_statistics(std::size_t channels);
    // A ShapeError naming the layer when a parameter or buffer no longer has the shape it was
    // registered with (a value replaced through mutable_value()): never a read past its end.
    void check_state() const;
    // The running statistics, for a training forward to move by `factor`. Only with them.
    RunningStats<T> moving_running_statistics(double factor);
    // The running statistics and their counter, for a forward to read and move; null without them.
    xt::xarray<T>* running_mean_buffer() { return running_mean_; }
    xt::xarray<T>* running_var_buffer() { return running_var_; }
    std::int64_t* batches_tracked() { return num_batches_tracked_; }

private:
    Shape affine_shape_;
    Shape running_shape_;
    std::optional<Var<T>> weight_;
    std::optional<Var<T>> bias_;
    std::vector<std::pair<std::string, Var<T>>> like_affine_;
    xt::xarray<T>* running_mean_ = nullptr;
    xt::xarray<T>* running_var_ = nullptr;
    std::int64_t* num_batches_tracked_ = nullptr;
};

}  // namespace xgrad
