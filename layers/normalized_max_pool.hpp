// The elementwise passes of a per-channel normalization (normalization/normalize.hpp) followed by a
// ReLU and 2×2 max pooling at stride 2, plane by plane: what BatchNormReLUMaxPool2d runs in place
// of stage 3 and of stage 4's passes, so that neither the normalized (N, C, H, W) tensor nor its
// gradient is ever written. Each (n, c) plane's ReLU outputs are taken into a buffer that stays in
// L1 and pooled from there (pool_2x2.hpp); the backward's sums read the windows alone, and its
// input gradient scatters the windows' gradient into such a buffer, one plane at a time:
//   forward         y[n, c, i, j] = max over window (i, j) of z = max(0, (x - centre_c)·scale_c + shift_c),
//                   the index of its arg-max in the plane, and x there; with running statistics,
//                   per plane, whether x is non-finite anywhere but at the arg-maxes
//   backward sums   per channel {Σg, Σg·(x - mean_c)}, g the window's gradient at its arg-max where
//                   the window's maximum is positive (the ReLU's mask there) and 0 elsewhere
//                   (fold_backward's sums): over the windows, from x at their arg-maxes, without
//                   reading x; NaN for a channel whose x is non-finite elsewhere, as the sums over
//                   every element are (a gradient of 0 times an infinite or NaN x)
//   backward apply  dx = g·alpha + ((x - centre)·k + shift), every element of x
// Rows and columns past the last whole window (an odd H or W) are normalized and get the x term of
// dx, as in MaxPool2d after BatchNormReLU2d. Instantiated for float and double. The sums are in
// double, added in an order that depends on the shape alone: the same bits on any thread count.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "layers/normalization/coefficients.hpp"
#include "layers/window.hpp"

namespace xgrad {

// What the forward leaves its backward, beside y: per output, the index of its arg-max in its input
// plane and x there, (N, C, OH, OW); per plane, whether x is non-finite anywhere else, (N, C), or
// null with batch statistics, which carry a non-finite x into every term of the sums already.
template <class T>
struct PooledArgMax {
    std::uint32_t* index;
    T* x;
    bool* nonfinite_elsewhere;
};

// y is (N, C, OH, OW) for the (N, C, H, W) x of g; a's rows are the channels. The planes of the
// channels of `channels`: in the calling thread for a block (the cache-blocked walk of
// normalize_batch_by_blocks), in parallel for Rows::all.
template <class T>
void relu_max_pool_forward(const WindowGeometry& g, const Affine<T>& a, const T* x, T* y, const PooledArgMax<T>& out,
                           const Rows& channels);

// y and `at_max` as the forward wrote them; gy is the gradient of y; `mean` has the mean each
// channel was normalized with.
template <class T>
std::vector<std::array<double, 2>> relu_max_pool_backward_sums(const WindowGeometry& g, const std::vector<double>& mean,
                                                                const T* y, const PooledArgMax<T>& at_max, const T* gy);

// d from fold_backward (with d.x_term false, x is not read).
template <class T>
void relu_max_pool_backward(const WindowGeometry& g, const InputGrad<T>& d, const T* y, const PooledArgMax<T>& at_max,
                            const T* gy, const T* x, T* dx);

}  // namespace xgrad
