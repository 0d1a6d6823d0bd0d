#include "bench/gemm_floor.hpp"

#include <memory>
#include <numeric>
#include <utility>

#include "autodiff/blas.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"

namespace xgrad_bench {

namespace {

using xgrad::Var;

// A Conv2d's products over the whole batch in im2col's layout, K = C·kh·kw: forward y (out, N·OH·OW)
// = W (out, K) · cols (K, N·OH·OW); dW (out, K) = dy · cols^T; dcols (K, N·OH·OW) = W^T · dy.
void add_conv(std::vector<Product>& out, const std::string& name, std::size_t channels, std::size_t positions,
              std::size_t k, bool input_gradient) {
    out.push_back({name + " forward", false, false, channels, positions, k});
    out.push_back({name + " weight gradient", false, true, channels, k, positions});
    if (input_gradient) out.push_back({name + " input gradient", true, false, k, positions, channels});
}

// A Linear's products as linear.cpp lays them out: y (N, out) = x (N, in) · W^T; dx (N, in) = dy · W;
// dW (out, in) = dy^T · x.
void add_linear(std::vector<Product>& out, const std::string& name, std::size_t batch, std::size_t in,
                std::size_t features, bool input_gradient) {
    out.push_back({name + " forward", false, true, batch, features, in});
    out.push_back({name + " weight gradient", true, false, features, in, batch});
    if (input_gradient) out.push_back({name + " input gradient", false, false, batch, in, features});
}

}  // namespace

std::vector<Product> training_step_products(xgrad::Sequential<float>& model, const xt::xarray<float>& images) {
    std::vector<Product> products;
    std::vector<xgrad::HookHandle> hooks;
    for (const auto& [path, module] : model.named_modules()) {
        if (auto* conv = dynamic_cast<xgrad::Conv2d<float>*>(module.get())) {
            hooks.push_back(conv->register_forward_hook([&products, conv](const xgrad::ForwardHookContext<float>& h) {
                const auto& y = h.output.shape();
                const std::size_t k = conv->in_channels() * conv->kernel_size().h * conv->kernel_size().w;
                add_conv(products, h.path, conv->out_channels(), y[0] * y[2] * y[3], k, h.input.requires_grad());
            }));
        } else if (auto* linear = dynamic_cast<xgrad::Linear<float>*>(module.get())) {
            hooks.push_back(linear->register_forward_hook([&products, linear](const xgrad::ForwardHookContext<float>& h) {
                add_linear(products, h.path, h.input.shape()[0], linear->in_features(), linear->out_features(),
                           h.input.requires_grad());
            }));
        }
    }
    model(Var<float>(images));  // with the graph, so that each input says whether it needs a gradient
    return products;
}

double total_flops(const std::vector<Product>& products) {
    return std::accumulate(products.begin(), products.end(), 0.0, [](double s, const Product& p) { return s + p.flops(); });
}

ProductRunner::ProductRunner(std::vector<Product> products) : products_(std::move(products)) {
    for (const Product& p : products_) {
        a_.emplace_back(p.m * p.k, 0.5f);
        b_.emplace_back(p.k * p.n, 0.25f);
        c_.emplace_back(p.m * p.n, 0.0f);
    }
}

void ProductRunner::run() {
    for (std::size_t i = 0; i < products_.size(); ++i) {
        const Product& p = products_[i];
        // Row-major: op(A) is (m, k), so A is stored (k, m) when transposed; op(B) is (k, n).
        xgrad::gemm<float>(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a_[i].data(), p.trans_a ? p.m : p.k, b_[i].data(),
                           p.trans_b ? p.k : p.n, 0.0f, c_[i].data(), p.n);
    }
}

}  // namespace xgrad_bench
