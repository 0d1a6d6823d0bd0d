// The GEMM floor of a training step: the matrix products a step of a model must compute, one per
// layer and pass over the whole batch (forward, weight gradient, input gradient), with their
// shapes read from a forward pass. Timing them alone, through the same gemm as the library,
// gives the time a step could not beat without fewer FLOPs or a faster sgemm.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include "layers/sequential.hpp"

namespace xgrad_bench {

// C (m, n) = op(A) op(B), op(A) (m, k): one product of a step.
struct Product {
    std::string what;  // "conv2 forward", "fc1 weight gradient", ...
    bool trans_a;
    bool trans_b;
    std::size_t m, n, k;
    double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
};

// The products of one training step of `model` on `images`: every Conv2d as im2col products over
// the batch ((out, C·kh·kw) times (C·kh·kw, N·OH·OW)), every Linear as (N, in) times (in, out);
// a layer's input gradient only where its input needs one (not for the images).
std::vector<Product> training_step_products(xgrad::Sequential<float>& model, const xt::xarray<float>& images);

double total_flops(const std::vector<Product>& products);

// Operands for the products, allocated once, and a call that runs them all.
class ProductRunner {
public:
    explicit ProductRunner(std::vector<Product> products);
    void run();
    double flops() const { return total_flops(products_); }

private:
    std::vector<Product> products_;
    std::vector<std::vector<float>> a_, b_, c_;
};

}  // namespace xgrad_bench
