// The BatchNorm fusions against their unfused forms, float, at the shapes of bench/bn_shapes.hpp
// (arguments N, C, S = H*W, threads):
//  - BN + ReLU in training, forward and forward+backward: the normalization stages with the ReLU
//    epilogue (layers/normalization/normalize.hpp) against the same without an epilogue and a
//    separate ReLU pass (forward: y = max(0, z); backward: dz = z > 0 ? dy : 0, then the BN
//    backward of dz);
//  - eval forward: the library's folded pass, y = (x - centre)·alpha + shift, against the naive
//    xtensor expression (x - running_mean) / sqrt(running_var + eps) · gamma + beta;
// and, at the seed CNN's conv shapes (arguments N, in, out, H = W, threads), Conv2d then
// BatchNorm2d in eval against the Conv2d with the BN folded in (fold_batch_norm), with the folded
// output's max_abs_err against the unfolded one.
// bytes_per_second and x_copy (bench/copy_floor.hpp) count the minimal traffic of the fused form
// for both forms (forward: read x, write y; backward: read dy and x, write dx), so that the ratio
// of the unfused form shows what its extra passes cost.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <memory>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>

#include "autodiff/grad_mode.hpp"
#include "bench/bn_shapes.hpp"
#include "bench/copy_floor.hpp"
#include "layers/conv2d.hpp"
#include "layers/fold_batch_norm.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/epilogue.hpp"
#include "layers/normalization/normalize.hpp"

namespace {

using xgrad::ChannelShape;

constexpr double kEps = 1e-5;

ChannelShape shape_of(const benchmark::State& state) {
    return {static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)),
            static_cast<std::size_t>(state.range(2))};
}

// The thread count is the last argument: argument 3 of the BN benchmarks, 4 of the conv ones.
tbb::global_control threads_of(const benchmark::State& state, int index = 3) {
    return tbb::global_control(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(state.range(index)));
}

std::vector<float> random_vector(std::size_t n, unsigned seed, float mean, float stddev = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(n);
    std::generate(v.begin(), v.end(), [&] { return dist(rng); });
    return v;
}

// Counters from the minimal traffic: `tensors` tensors of the shape read or written.
void set_traffic(benchmark::State& state, const ChannelShape& s, std::size_t tensors) {
    xgrad_bench::set_traffic_counters(state, tensors * s.size() * sizeof(float), static_cast<int>(state.range(3)));
}

// f(begin, end) over [0, n) in pieces of 16 Ki elements spread over the threads: a separate
// elementwise pass, threaded as the BN kernels are.
template <class F>
void parallel_pieces(std::size_t n, const F& f) {
    constexpr std::size_t piece = 1 << 14;
    tbb::parallel_for(std::size_t{0}, (n + piece - 1) / piece,
                      [&](std::size_t p) { f(p * piece, std::min(n, (p + 1) * piece)); });
}

// One BN + ReLU layer in training at the state's shape (x ~ N(0.5, 1), dy ~ N(0, 1), gamma 1,
// beta 0, running statistics moved as a training step moves them), fused or as BN then ReLU.
struct Layer {
    ChannelShape s;
    std::vector<float> x, dy, y, z, dz, dx, gamma, beta, dgamma, dbeta, running_mean, running_var;

    explicit Layer(const benchmark::State& state)
        : s(shape_of(state)), x(random_vector(s.size(), 1, 0.5f)), dy(random_vector(s.size(), 2, 0.0f)), y(s.size()),
          z(s.size()), dz(s.size()), dx(s.size()), gamma(s.c, 1.0f), beta(s.c, 0.0f), dgamma(s.c), dbeta(s.c),
          running_mean(s.c, 0.0f), running_var(s.c, 1.0f) {}

    // The forward in training into out, running statistics moved; `epilogue` follows the BN.
    template <class Epilogue>
    xgrad::NormalizedBatch normalize(const Epilogue& epilogue, float* out) {
        xgrad::NormalizeOptions<float> options;
        options.eps = kEps;
        options.gamma = gamma.data();
        options.beta = beta.data();
        options.running = xgrad::RunningStats<float>{running_mean.data(), running_var.data(), 0.1};
        return xgrad::normalize_batch(xgrad::Grouping::per_channel(s), x.data(), options, epilogue, out);
    }

    // Its backward given the gradient `grad` of out.
    template <class Epilogue>
    void normalize_backward(const xgrad::NormalizedBatch& batch, const Epilogue& epilogue, const float* grad) {
        xgrad::normalize_backward(xgrad::Grouping::per_channel(s), batch, xgrad::GradientThrough::batch(), grad,
                                  x.data(), gamma.data(), beta.data(), epilogue,
                                  xgrad::NormalizeGrads<float>{dx.data(), dgamma.data(), dbeta.data()});
    }

    xgrad::NormalizedBatch forward(bool fused) {
        if (fused) return normalize(xgrad::ReluEpilogue{}, y.data());
        // z = BN(x), kept for the ReLU's backward, then y = max(0, z).
        auto batch = normalize(xgrad::NoEpilogue{}, z.data());
        parallel_pieces(s.size(), [in = z.data(), out = y.data()](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) out[i] = std::max(in[i], 0.0f);
        });
        return batch;
    }

    void backward(bool fused, const xgrad::NormalizedBatch& batch) {
        if (fused) {
            normalize_backward(batch, xgrad::ReluEpilogue{}, dy.data());
            return;
        }
        parallel_pieces(s.size(), [g = dy.data(), in = z.data(), out = dz.data()](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) {
                const float gi = g[i];  // read either way, so that the select compiles to a blend
                out[i] = in[i] > 0.0f ? gi : 0.0f;
            }
        });
        normalize_backward(batch, xgrad::NoEpilogue{}, dz.data());
    }
};

void BM_bn_relu_forward(benchmark::State& state, bool fused) {
    auto threads = threads_of(state);
    Layer layer(state);
    for (auto _ : state) {
        const auto batch = layer.forward(fused);
        benchmark::DoNotOptimize(batch.norm.mean.data());
        benchmark::DoNotOptimize(layer.y.data());
    }
    set_traffic(state, layer.s, 2);
}

void BM_bn_relu_forward_backward(benchmark::State& state, bool fused) {
    auto threads = threads_of(state);
    Layer layer(state);
    for (auto _ : state) {
        layer.backward(fused, layer.forward(fused));
        benchmark::DoNotOptimize(layer.y.data());
        benchmark::DoNotOptimize(layer.dx.data());
    }
    set_traffic(state, layer.s, 5);
}

// Eval forward with trained-like running statistics and affine parameters.
struct EvalLayer {
    ChannelShape s;
    std::vector<float> x, y, gamma, beta, running_mean, running_var;

    explicit EvalLayer(const benchmark::State& state)
        : s(shape_of(state)), x(random_vector(s.size(), 1, 0.5f)), y(s.size()), gamma(random_vector(s.c, 3, 1.0f, 0.2f)),
          beta(random_vector(s.c, 4, 0.0f, 0.1f)), running_mean(random_vector(s.c, 5, 0.5f, 0.05f)),
          running_var(random_vector(s.c, 6, 1.0f, 0.05f)) {}
};

void BM_eval_forward_folded(benchmark::State& state) {
    auto threads = threads_of(state);
    EvalLayer l(state);
    xgrad::NormalizeOptions<float> options;
    options.gamma = l.gamma.data();
    options.beta = l.beta.data();
    for (auto _ : state) {
        // The running statistics' invstd, folded with gamma and beta, then the pass: as BN's eval forward.
        const auto running = xgrad::running_normalization(l.running_mean.data(), l.running_var.data(), l.s.c, kEps);
        xgrad::normalize_with(xgrad::Grouping::per_channel(l.s), running, l.x.data(), options, xgrad::NoEpilogue{},
                              l.y.data());
        benchmark::DoNotOptimize(running.invstd.data());
        benchmark::DoNotOptimize(l.y.data());
    }
    set_traffic(state, l.s, 2);
}

// The expression as written, per element, over (N, C, S) with the statistics broadcast as
// (C, 1): what xtensor evaluates (in the calling thread: xtensor assigns without TBB here).
void BM_eval_forward_naive(benchmark::State& state) {
    auto threads = threads_of(state);
    EvalLayer l(state);
    const std::array<std::size_t, 3> shape{l.s.n, l.s.c, l.s.s};
    const std::array<std::size_t, 2> column{l.s.c, 1};
    const auto x = xt::adapt(l.x.data(), l.s.size(), xt::no_ownership(), shape);
    auto y = xt::adapt(l.y.data(), l.s.size(), xt::no_ownership(), shape);
    const auto per_channel = [&](std::vector<float>& v) { return xt::adapt(v.data(), l.s.c, xt::no_ownership(), column); };
    const auto mean = per_channel(l.running_mean), var = per_channel(l.running_var);
    const auto gamma = per_channel(l.gamma), beta = per_channel(l.beta);
    for (auto _ : state) {
        xt::noalias(y) = (x - mean) / xt::sqrt(var + static_cast<float>(kEps)) * gamma + beta;
        benchmark::DoNotOptimize(l.y.data());
    }
    set_traffic(state, l.s, 2);
}

// A conv of the seed CNN (3x3, padding 1, torch's init) and the BN after it in eval, with
// trained-like state: running statistics the conv output's own (one training step with momentum
// 1), gamma ~ 1 ± 0.2, beta ~ ± 0.1; the input |N(0, 1)|, as after a ReLU.
struct ConvBn {
    xgrad::Rng rng{7};
    xgrad::Conv2d<float> conv;
    xgrad::BatchNorm2d<float> bn;
    xgrad::Var<float> x;
    std::shared_ptr<xgrad::Conv2d<float>> folded;

    explicit ConvBn(const benchmark::State& state)
        : conv(static_cast<std::size_t>(state.range(1)), static_cast<std::size_t>(state.range(2)), 3, 1, 1, true, rng),
          bn(static_cast<std::size_t>(state.range(2)), {.momentum = 1.0}), x(input(state)) {
        const xgrad::NoGrad no_grad;
        bn(conv(x));
        bn.eval();
        auto& gamma = xgrad::Var<float>(*bn.weight()).mutable_value();
        auto& beta = xgrad::Var<float>(*bn.bias()).mutable_value();
        for (std::size_t c = 0; c < gamma.size(); ++c) {
            gamma(c) = static_cast<float>(1.0 + 0.2 * rng.normal());
            beta(c) = static_cast<float>(0.1 * rng.normal());
        }
        folded = xgrad::fold_batch_norm(conv, bn);
    }

    xt::xarray<float> input(const benchmark::State& state) {
        const auto n = static_cast<std::size_t>(state.range(0)), hw = static_cast<std::size_t>(state.range(3));
        xt::xarray<float> v = xt::xarray<float>::from_shape({n, conv.in_channels(), hw, hw});
        for (auto& e : v) e = static_cast<float>(std::abs(rng.normal()));
        return v;
    }
};

void BM_conv_bn_eval(benchmark::State& state, bool fold) {
    auto threads = threads_of(state, 4);
    ConvBn m(state);
    const xgrad::NoGrad no_grad;
    const auto run = [&] { return fold ? (*m.folded)(m.x) : m.bn(m.conv(m.x)); };
    for (auto _ : state) {
        const xgrad::Var<float> y = run();
        benchmark::DoNotOptimize(y.value().data());
    }
    if (fold) {
        const xt::xarray<float> reference = m.bn(m.conv(m.x)).value();
        state.counters["max_abs_err"] = xt::amax(xt::abs(run().value() - reference))();
        state.counters["max_abs_y"] = xt::amax(xt::abs(reference))();
    }
}

void shapes(benchmark::internal::Benchmark* b) {
    xgrad_bench::bn_shapes(b);
    b->ArgNames({"N", "C", "S", "threads"});
}

// The seed CNN's conv1 (1 -> 32 on 28x28) and conv2 (32 -> 64 on 14x14) at batch 64.
void conv_shapes(benchmark::internal::Benchmark* b) {
    for (std::int64_t threads : {1, 2}) {
        b->Args({64, 1, 32, 28, threads});
        b->Args({64, 32, 64, 14, threads});
    }
    b->ArgNames({"N", "in", "out", "HW", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_bn_relu_forward, fused, true)->Apply(shapes);
BENCHMARK_CAPTURE(BM_bn_relu_forward, unfused, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_bn_relu_forward_backward, fused, true)->Apply(shapes);
BENCHMARK_CAPTURE(BM_bn_relu_forward_backward, unfused, false)->Apply(shapes);
BENCHMARK(BM_eval_forward_folded)->Apply(shapes);
BENCHMARK(BM_eval_forward_naive)->Apply(shapes);
BENCHMARK_CAPTURE(BM_conv_bn_eval, unfolded, false)->Apply(conv_shapes);
BENCHMARK_CAPTURE(BM_conv_bn_eval, folded, true)->Apply(conv_shapes);

}  // namespace
