#include "bench/gemm_floor.hpp"

#include <algorithm>
#include <numeric>
#include <utility>

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "layers/conv2d.hpp"
#include "layers/linear.hpp"

namespace xgrad_bench {

namespace {

using xgrad::GemmCall;

// A product with its operands stored without gaps: op(A) (m, k), op(B) (k, n), C (m, n).
GemmCall tight(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k) {
    return {trans_a, trans_b, m, n, k, trans_a ? m : k, trans_b ? k : n, n};
}

// A Conv2d's products over the whole batch, K = C·kh·kw: forward y (out, N·OH·OW) = W (out, K) ·
// cols (K, N·OH·OW); dW (out, K) = dy · cols^T; dcols (K, N·OH·OW) = W^T · dy.
void add_conv(std::vector<GemmCall>& out, std::size_t channels, std::size_t positions, std::size_t k,
              bool input_gradient) {
    out.push_back(tight(false, false, channels, positions, k));
    out.push_back(tight(false, true, channels, k, positions));
    if (input_gradient) out.push_back(tight(true, false, k, positions, channels));
}

// A Linear's products as linear.cpp lays them out: y (N, out) = x (N, in) · W^T; dW (out, in) =
// dy^T · x; dx (N, in) = dy · W.
void add_linear(std::vector<GemmCall>& out, std::size_t batch, std::size_t in, std::size_t features,
                bool input_gradient) {
    out.push_back(tight(false, true, batch, features, in));
    out.push_back(tight(true, false, features, in, batch));
    if (input_gradient) out.push_back(tight(false, false, batch, in, features));
}

// Elements each operand of `p` spans, row-major with its leading dimension.
std::size_t a_extent(const GemmCall& p) { return (p.trans_a ? p.k : p.m) * p.lda; }
std::size_t b_extent(const GemmCall& p) { return (p.trans_b ? p.n : p.k) * p.ldb; }
std::size_t c_extent(const GemmCall& p) { return p.m * p.ldc; }

}  // namespace

std::vector<GemmCall> recorded_products(const std::function<void()>& step) {
    const xgrad::GemmCallLog log;
    step();
    return log.calls();
}

std::vector<GemmCall> layer_products(xgrad::Sequential<float>& model, const xt::xarray<float>& images) {
    std::vector<GemmCall> products;
    std::vector<xgrad::HookHandle> hooks;
    for (const auto& [path, module] : model.named_modules()) {
        if (auto* conv = dynamic_cast<xgrad::Conv2d<float>*>(module.get())) {
            hooks.push_back(conv->register_forward_hook([&products, conv](const xgrad::ForwardHookContext<float>& h) {
                const auto& y = h.output.shape();
                const std::size_t k = conv->in_channels() * conv->kernel_size().h * conv->kernel_size().w;
                add_conv(products, conv->out_channels(), y[0] * y[2] * y[3], k, h.input.requires_grad());
            }));
        } else if (auto* linear = dynamic_cast<xgrad::Linear<float>*>(module.get())) {
            hooks.push_back(linear->register_forward_hook([&products, linear](const xgrad::ForwardHookContext<float>& h) {
                add_linear(products, h.input.shape()[0], linear->in_features(), linear->out_features(), h.input.requires_grad());
            }));
        }
    }
    model(xgrad::Var<float>(images));  // with the graph, so that each input says whether it needs a gradient
    return products;
}

double total_flops(const std::vector<GemmCall>& products) {
    return std::accumulate(products.begin(), products.end(), 0.0, [](double s, const GemmCall& p) { return s + p.flops(); });
}

ProductRunner::ProductRunner(std::vector<GemmCall> products) : products_(std::move(products)) {
    std::size_t a = 0, b = 0, c = 0;
    for (const GemmCall& p : products_) a = std::max(a, a_extent(p)), b = std::max(b, b_extent(p)), c = std::max(c, c_extent(p));
    operands_ = tbb::enumerable_thread_specific<Operands>(
        [a, b, c] { return Operands{std::vector<float>(a, 0.5f), std::vector<float>(b, 0.25f), std::vector<float>(c, 0.0f)}; });
}

void ProductRunner::run() {
    tbb::parallel_for(std::size_t{0}, products_.size(), [&](std::size_t i) {
        const GemmCall& p = products_[i];
        Operands& o = operands_.local();
        // A split product waits for its parts; isolated, the waiting thread takes none of the other
        // products meanwhile, which would write the same thread's operands.
        tbb::this_task_arena::isolate([&] {
            xgrad::gemm<float>(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, o.a.data(), p.lda, o.b.data(), p.ldb, 0.0f,
                               o.c.data(), p.ldc);
        });
    });
}

}  // namespace xgrad_bench
