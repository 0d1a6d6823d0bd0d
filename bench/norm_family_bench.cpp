// The normalization family's kernels timed directly, without the graph, as batch_norm_bench times
// BatchNorm's, so that the figures compare with its: forward-train and forward-train + backward of
// GroupNorm, LayerNorm over (C, H, W), InstanceNorm2d, BatchRenorm2d, Ghost BN and
// FilterResponseNorm2d at the shapes of bench/bn_shapes.hpp, 1 and 2 threads, float. Each layer's
// kernels are what its forward and its backward node call (layers/normalization/normalize.hpp with
// the layer's grouping and epilogue, LayerNorm's by layer_norm_kernel.hpp, Ghost BN's by
// ghost_batch_norm_kernel.hpp, and the column sums of GroupNorm's weight and bias over short rows),
// with PyTorch's default flags:
//   group_norm        GroupNorm(groups, C), affine, by its kernels (group_norm_kernel.hpp); groups
//                     = 32 where 32 divides C, else the largest divisor of C below 32 (the
//                     "groups" argument of the name)
//   layer_norm        LayerNorm((C, H, W)), elementwise affine
//   instance_norm     InstanceNorm2d(C): no affine, no running statistics; not run at H·W = 1,
//                     where an instance has one value (the layer refuses it in training)
//   batch_renorm      BatchRenorm2d(C) in its relaxed phase (rmax = 3, dmax = 5), momentum 0.01
//   ghost_batch_norm  GhostBatchNorm2d(C, virtual_batch = N/4, the "virtual_batch" argument): four
//                     virtual batches; every N of the list is a multiple of 4 (another is skipped)
//   filter_response_norm  FilterResponseNorm2d(C) with its TLU (tau -0.5); no PyTorch layer to set
//                     beside it
// And BatchNorm1d's forward at small N and C (batch_norm_per_group), for a call's fixed, per-group
// and per-element costs.
// Arguments: N, C, S (= H*W), threads[, groups | virtual_batch]. bytes_per_second counts the
// minimal traffic (forward: read x, write y; forward + backward: that and read dy and x, write dx;
// plus LayerNorm's elementwise weight and bias, read in both, and their gradients, written), and
// x_copy is the time over the copy floor of that traffic (bench/copy_floor.hpp).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/bench_tensors.hpp"
#include "bench/bn_shapes.hpp"
#include "bench/copy_floor.hpp"
#include "layers/normalization/elementwise_affine.hpp"
#include "layers/normalization/epilogue.hpp"
#include "layers/normalization/ghost_batch_norm_kernel.hpp"
#include "layers/normalization/group_norm_kernel.hpp"
#include "layers/normalization/layer_norm_kernel.hpp"
#include "layers/normalization/normalize.hpp"

namespace {

using xgrad::ChannelShape;
using xgrad::Grouping;
using xgrad_bench::random_vector;

// x ~ N(0.5, 1), dy ~ N(0, 1), and the outputs, at the state's shape.
struct Tensors {
    ChannelShape s;
    std::vector<float> x, dy, y, dx;

    explicit Tensors(const benchmark::State& state)
        : s(xgrad_bench::shape_of(state)), x(random_vector(s.size(), 1, 0.5f)), dy(random_vector(s.size(), 2, 0.0f)),
          y(s.size()), dx(s.size()) {}
};

// gamma 1, beta 0 and their gradients, `n` values each.
struct Affine {
    std::vector<float> gamma, beta, dgamma, dbeta;
    explicit Affine(std::size_t n) : gamma(n, 1.0f), beta(n, 0.0f), dgamma(n), dbeta(n) {}
    xgrad::NormalizeGrads<float> grads(float* dx) { return {dx, dgamma.data(), dbeta.data()}; }
};

// A per-channel layer's running statistics (mean 0, variance 1).
struct Running {
    std::vector<float> mean, var;
    explicit Running(std::size_t c) : mean(c, 0.0f), var(c, 1.0f) {}
    xgrad::RunningStats<float> moved_by(double factor) { return {mean.data(), var.data(), factor}; }
};

// GroupNorm with affine, by the layer's kernels (group_norm_kernel.hpp).
struct GroupNormKernels {
    Tensors t;
    std::size_t groups;
    Affine affine;
    static constexpr std::size_t affine_elements = 0;  // per channel: negligible traffic

    explicit GroupNormKernels(const benchmark::State& state)
        : t(state), groups(static_cast<std::size_t>(state.range(4))), affine(t.s.c) {}
    xgrad::NormalizedBatch forward() {
        return xgrad::group_norm_forward(t.s, groups, t.x.data(), affine.gamma.data(), affine.beta.data(), 1e-5,
                                         t.y.data());
    }
    void backward(const xgrad::NormalizedBatch& batch) {
        xgrad::group_norm_backward(t.s, groups, batch, t.dy.data(), t.x.data(), affine.gamma.data(),
                                   affine.beta.data(), affine.grads(t.dx.data()));
    }
};

// InstanceNorm: one group per channel, no affine map.
struct InstanceNormKernels {
    Tensors t;
    Grouping grouping;
    static constexpr std::size_t affine_elements = 0;

    explicit InstanceNormKernels(const benchmark::State& state)
        : t(state), grouping(Grouping::per_sample(t.s, t.s.c)) {}
    xgrad::NormalizedBatch forward() {
        return xgrad::normalize_batch(grouping, t.x.data(), xgrad::NormalizeOptions<float>{}, xgrad::NoEpilogue{},
                                      t.y.data());
    }
    void backward(const xgrad::NormalizedBatch& batch) {
        xgrad::normalize_backward<float>(grouping, batch, xgrad::GradientThrough::batch(), t.dy.data(), t.x.data(),
                                         nullptr, nullptr, xgrad::NoEpilogue{},
                                         xgrad::NormalizeGrads<float>{t.dx.data()});
    }
};

// LayerNorm over (C, H, W): one group per sample over C·S values, the weight and bias elementwise
// in the epilogue, forward and backward by layer_norm_kernel.hpp.
struct LayerNormKernels {
    Tensors t;
    std::size_t affine_elements;
    Grouping grouping;
    Affine affine;
    xgrad::ElementwiseAffineEpilogue<float> epilogue;

    explicit LayerNormKernels(const benchmark::State& state)
        : t(state), affine_elements(t.s.c * t.s.s), grouping(Grouping::per_row(t.s.n, affine_elements)),
          affine(affine_elements), epilogue(affine.gamma.data(), affine.beta.data(), affine_elements) {}

    xgrad::NormalizedBatch forward() {
        return xgrad::layer_norm_forward(grouping.groups(), grouping.group_size(), t.x.data(), epilogue, 1e-5,
                                         t.y.data());
    }
    void backward(const xgrad::NormalizedBatch& batch) {
        xgrad::layer_norm_backward(grouping.groups(), grouping.group_size(), batch, t.dy.data(), t.x.data(), epilogue,
                                   xgrad::NormalizeGrads<float>{t.dx.data(), affine.dgamma.data(),
                                                                affine.dbeta.data()});
    }
};

// FilterResponseNorm2d: one group per (sample, channel), not centred (nu² the mean of x²), gamma
// and beta per channel, the TLU with tau per channel after it, as the layer calls them.
struct FilterResponseNormKernels {
    Tensors t;
    Grouping grouping;
    Affine affine;
    std::vector<float> tau;
    xgrad::TluEpilogue<float> tlu;
    static constexpr std::size_t affine_elements = 0;

    explicit FilterResponseNormKernels(const benchmark::State& state)
        : t(state), grouping(Grouping::per_sample(t.s, t.s.c)), affine(t.s.c), tau(t.s.c, -0.5f),
          tlu(grouping.row_view(), t.s.c, tau.data()) {}
    xgrad::NormalizedBatch forward() {
        xgrad::NormalizeOptions<float> options;
        options.eps = 1e-6;
        options.gamma = affine.gamma.data();
        options.beta = affine.beta.data();
        options.centring = xgrad::Centring::none;
        return xgrad::normalize_batch(grouping, t.x.data(), options, tlu, t.y.data());
    }
    void backward(const xgrad::NormalizedBatch& batch) {
        auto dtau = xgrad::normalize_backward(grouping, batch, xgrad::GradientThrough::mean_square(), t.dy.data(),
                                              t.x.data(), affine.gamma.data(), affine.beta.data(), tlu,
                                              affine.grads(t.dx.data()));
        benchmark::DoNotOptimize(dtau);
    }
};

// BatchNorm's per-channel kernels, the running statistics moved with `momentum`. Alone, BatchNorm1d's
// forward at small N and C (batch_norm_per_group): at such shapes a call's time is a fixed part, a
// part per group (the stages' loops over the C groups: the statistics' shift and finish, the inverse
// std, the fold, the running statistics) and a part per element, which its grid separates; Ghost
// BN's virtual batches are such calls.
struct BatchNormKernels {
    Tensors t;
    Affine affine;
    Running running;
    double momentum = 0.1;
    std::optional<xgrad::RenormLimits> renorm;
    static constexpr std::size_t affine_elements = 0;

    explicit BatchNormKernels(const benchmark::State& state) : t(state), affine(t.s.c), running(t.s.c) {}

    xgrad::NormalizedBatch forward() {
        xgrad::NormalizeOptions<float> options;
        options.gamma = affine.gamma.data();
        options.beta = affine.beta.data();
        options.running = running.moved_by(momentum);
        options.renorm = renorm;
        return xgrad::normalize_batch(Grouping::per_channel(t.s), t.x.data(), options, xgrad::NoEpilogue{}, t.y.data());
    }
    void backward(const xgrad::NormalizedBatch& batch) {
        xgrad::normalize_backward(Grouping::per_channel(t.s), batch, xgrad::GradientThrough::batch(), t.dy.data(),
                                  t.x.data(), affine.gamma.data(), affine.beta.data(), xgrad::NoEpilogue{},
                                  affine.grads(t.dx.data()));
    }
};

// Batch Renorm: BatchNorm's per-channel kernels with the r, d correction from the running
// statistics, which it moves.
struct BatchRenormKernels : BatchNormKernels {
    explicit BatchRenormKernels(const benchmark::State& state) : BatchNormKernels(state) {
        momentum = 0.01;
        renorm = xgrad::RenormLimits{3.0, 5.0};
    }
};

// Ghost BN, by the layer's kernels (ghost_batch_norm_kernel.hpp): BatchNorm's per-channel kernels
// over the virtual batches, small ones in parallel (the kernel's rule), the running statistics moved
// by each in turn.
struct GhostBatchNormKernels {
    Tensors t;
    Affine affine;
    Running running;
    std::vector<xgrad::VirtualBatch> chunks;
    static constexpr std::size_t affine_elements = 0;

    explicit GhostBatchNormKernels(const benchmark::State& state)
        : t(state), affine(t.s.c), running(t.s.c),
          chunks(xgrad::virtual_batches(t.s.n, static_cast<std::size_t>(state.range(4)))) {}

    std::vector<xgrad::NormalizedBatch> forward() {
        const xgrad::ChunkRunningStats<float> moved{running.mean.data(), running.var.data(),
                                                    std::vector<double>(chunks.size(), 0.1)};
        return xgrad::ghost_batch_norm_forward(t.s, chunks, t.x.data(), affine.gamma.data(), affine.beta.data(), 1e-5,
                                               moved, t.y.data());
    }
    void backward(const std::vector<xgrad::NormalizedBatch>& batches) {
        xgrad::ghost_batch_norm_backward(t.s, chunks, batches, t.dy.data(), t.x.data(), affine.gamma.data(),
                                         affine.beta.data(), affine.grads(t.dx.data()));
    }
};

// Counters from the minimal traffic: `tensors` tensors of the shape and `affine` elementwise
// parameter arrays read or written.
template <class Kernels>
void set_traffic(benchmark::State& state, const Kernels& k, std::size_t tensors, std::size_t affine) {
    const std::size_t elements = tensors * k.t.s.size() + affine * k.affine_elements;
    xgrad_bench::set_traffic_counters(state, elements * sizeof(float), static_cast<int>(state.range(3)));
}

template <class Kernels>
void forward_train(benchmark::State& state) {
    auto threads = xgrad_bench::threads_of(state);
    Kernels k(state);
    for (auto _ : state) {
        auto batch = k.forward();
        benchmark::DoNotOptimize(batch);
        benchmark::DoNotOptimize(k.t.y.data());
    }
    set_traffic(state, k, 2, 2);
}

template <class Kernels>
void forward_backward_train(benchmark::State& state) {
    auto threads = xgrad_bench::threads_of(state);
    Kernels k(state);
    for (auto _ : state) {
        k.backward(k.forward());
        benchmark::DoNotOptimize(k.t.y.data());
        benchmark::DoNotOptimize(k.t.dx.data());
    }
    set_traffic(state, k, 5, 5);
}

using Extra = std::optional<std::vector<std::int64_t>>;

// 32 where it divides C, else the largest divisor of C below 32.
std::int64_t group_count(std::int64_t c) {
    std::int64_t groups = 32;
    while (c % groups != 0) --groups;
    return groups;
}

template <class Kernels, class ExtraOf>
void register_layer(const std::string& layer, const ExtraOf& extra_of, std::vector<std::string> arg_names) {
    arg_names.insert(arg_names.begin(), {"N", "C", "S", "threads"});
    for (auto [phase, run] : {std::pair{"forward_train", &forward_train<Kernels>},
                              std::pair{"forward_backward_train", &forward_backward_train<Kernels>}}) {
        auto* b = benchmark::RegisterBenchmark(("BM_" + layer + "_" + phase).c_str(), run);
        xgrad_bench::bn_shapes_with(b, extra_of);
        b->ArgNames(arg_names);
    }
}

[[maybe_unused]] const bool registered = [] {
    const auto every_shape = [](std::int64_t, std::int64_t, std::int64_t) {
        return Extra(std::vector<std::int64_t>{});
    };
    register_layer<GroupNormKernels>(
        "group_norm",
        [](std::int64_t, std::int64_t c, std::int64_t) { return Extra(std::vector<std::int64_t>{group_count(c)}); },
        {"groups"});
    register_layer<LayerNormKernels>("layer_norm", every_shape, {});
    register_layer<InstanceNormKernels>(
        "instance_norm",
        [](std::int64_t, std::int64_t, std::int64_t s) { return s > 1 ? Extra(std::vector<std::int64_t>{}) : Extra(); },
        {});
    register_layer<BatchRenormKernels>("batch_renorm", every_shape, {});
    register_layer<FilterResponseNormKernels>("filter_response_norm", every_shape, {});
    // N samples of C channels (S = 1) at 1 thread; Ghost BN's virtual batch at (64, 512) is (16, 512).
    auto* per_group = benchmark::RegisterBenchmark("BM_batch_norm_per_group_forward_train",
                                                   &forward_train<BatchNormKernels>);
    for (std::int64_t n : {4, 16, 64}) {
        for (std::int64_t c : {8, 64, 512}) per_group->Args({n, c, 1, 1});
    }
    per_group->ArgNames({"N", "C", "S", "threads"})->UseRealTime();
    register_layer<GhostBatchNormKernels>("ghost_batch_norm",
                                          [](std::int64_t n, std::int64_t, std::int64_t) {
                                              return n % 4 == 0 ? Extra(std::vector<std::int64_t>{n / 4}) : Extra();
                                          },
                                          {"virtual_batch"});
    return true;
}();

}  // namespace
