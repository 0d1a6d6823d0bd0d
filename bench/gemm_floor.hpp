// The GEMM floor of a training step: its matrix products timed alone, through the same gemm, at
// the same threads, with nothing else of the step around them.
//  - recorded_products: the products one step makes, as gemm was called (xgrad::GemmCallLog), at
//    their own shapes: the time a step could not beat without fewer FLOPs or a faster sgemm (a
//    product that a kernel of its own makes in gemm's stead, such as a short filter's weight
//    gradient, is logged and replayed through sgemm all the same);
//  - layer_products: one product per layer and pass over the whole batch (forward, weight
//    gradient, input gradient), with shapes read from a forward pass: what the step would cost if
//    it made each layer's product in one call.
#pragma once

#include <functional>
#include <vector>

#include <tbb/enumerable_thread_specific.h>
#include <xtensor/xarray.hpp>

#include "autodiff/blas.hpp"
#include "layers/sequential.hpp"

namespace xgrad_bench {

// The gemm<float> calls that `step` makes, in the order they were made (threads interleave).
std::vector<xgrad::GemmCall> recorded_products(const std::function<void()>& step);

// Every Conv2d as im2col products over the batch ((out, C·kh·kw) times (C·kh·kw, N·OH·OW)), every
// Linear as linear.cpp lays out its products; a layer's input gradient only where its input needs
// one (not for the images).
std::vector<xgrad::GemmCall> layer_products(xgrad::Sequential<float>& model, const xt::xarray<float>& images);

double total_flops(const std::vector<xgrad::GemmCall>& products);

// Runs products spread over the threads, as if independent (the step's layers run one after
// another: at 2 threads the replay is the kinder), each thread with its own operands, sized for the
// largest product (a replayed product reads them from the start where the step read its own part
// of a larger buffer), and with beta = 0 (where the step adds to a gradient, it also reads C).
// If anything, the replay is kinder to the caches than the step.
class ProductRunner {
public:
    explicit ProductRunner(std::vector<xgrad::GemmCall> products);
    void run();
    double flops() const { return total_flops(products_); }

private:
    struct Operands {
        std::vector<float> a, b, c;
    };
    std::vector<xgrad::GemmCall> products_;
    tbb::enumerable_thread_specific<Operands> operands_;
};

}  // namespace xgrad_bench
