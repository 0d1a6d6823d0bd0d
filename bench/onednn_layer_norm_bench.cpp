// oneDNN's layer normalization (Debian's libdnnl 2.6), the reference for xgrad's LayerNorm over
// (C, H, W): the (N, C, S) tensor as N rows of C·S elements, normalized along the row, with an
// elementwise scale and shift of C·S values each, f32; forward-train and forward-train + backward
// at the shapes of bench/bn_shapes.hpp, 1 and 2 OpenMP threads. Arguments: N, C, S, threads.
// bytes_per_second counts the same minimal traffic as norm_family_bench.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <unordered_map>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bn_shapes.hpp"

namespace {

using dnnl::memory;

constexpr float epsilon = 1e-5f;
const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

struct Problem {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    memory::desc data;
    memory::desc row;
    std::int64_t elements;

    explicit Problem(benchmark::State& state) {
        omp_set_num_threads(static_cast<int>(state.range(3)));
        const std::int64_t n = state.range(0), m = state.range(1) * state.range(2);
        data = memory::desc({n, m}, memory::data_type::f32, memory::format_tag::ab);
        row = memory::desc({m}, memory::data_type::f32, memory::format_tag::a);
        elements = n * m;
    }

    memory filled(const memory::desc& desc, float mean, unsigned seed) const {
        memory m(desc, engine);
        auto* p = static_cast<float*>(m.get_data_handle());
        std::mt19937 rng(seed);
        std::normal_distribution<float> dist(mean, 1.0f);
        std::generate(p, p + desc.get_size() / sizeof(float), [&] { return dist(rng); });
        return m;
    }
};

void BM_onednn_layer_norm_forward_train(benchmark::State& state) {
    Problem p(state);
    const dnnl::layer_normalization_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_training, p.data, epsilon, flags}, p.engine);
    const dnnl::layer_normalization_forward forward(pd);
    const std::unordered_map<int, memory> args{{DNNL_ARG_SRC, p.filled(p.data, 0.5f, 1)},
                                               {DNNL_ARG_DST, memory(p.data, p.engine)},
                                               {DNNL_ARG_MEAN, memory(pd.mean_desc(), p.engine)},
                                               {DNNL_ARG_VARIANCE, memory(pd.variance_desc(), p.engine)},
                                               {DNNL_ARG_SCALE, p.filled(p.row, 1.0f, 3)},
                                               {DNNL_ARG_SHIFT, p.filled(p.row, 0.0f, 4)}};
    for (auto _ : state) {
        forward.execute(p.stream, args);
        p.stream.wait();
    }
    state.SetBytesProcessed(state.iterations() * 2 * p.elements * static_cast<std::int64_t>(sizeof(float)));
}

void BM_onednn_layer_norm_forward_backward_train(benchmark::State& state) {
    Problem p(state);
    const dnnl::layer_normalization_forward::primitive_desc forward_pd(
        {dnnl::prop_kind::forward_training, p.data, epsilon, flags}, p.engine);
    const dnnl::layer_normalization_backward::primitive_desc backward_pd(
        {dnnl::prop_kind::backward, p.data, p.data, epsilon, flags}, p.engine, forward_pd);
    const dnnl::layer_normalization_forward forward(forward_pd);
    const dnnl::layer_normalization_backward backward(backward_pd);
    const memory src = p.filled(p.data, 0.5f, 1), mean(forward_pd.mean_desc(), p.engine),
                 variance(forward_pd.variance_desc(), p.engine), scale = p.filled(p.row, 1.0f, 3),
                 shift = p.filled(p.row, 0.0f, 4);
    const std::unordered_map<int, memory> forward_args{{DNNL_ARG_SRC, src},     {DNNL_ARG_DST, memory(p.data, p.engine)},
                                                       {DNNL_ARG_MEAN, mean},   {DNNL_ARG_VARIANCE, variance},
                                                       {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift}};
    const std::unordered_map<int, memory> backward_args{{DNNL_ARG_SRC, src},
                                                        {DNNL_ARG_MEAN, mean},
                                                        {DNNL_ARG_VARIANCE, variance},
                                                        {DNNL_ARG_DIFF_DST, p.filled(p.data, 0.0f, 2)},
                                                        {DNNL_ARG_SCALE, scale},
                                                        {DNNL_ARG_DIFF_SRC, memory(p.data, p.engine)},
                                                        {DNNL_ARG_SHIFT, shift},
                                                        {DNNL_ARG_DIFF_SCALE, memory(p.row, p.engine)},
                                                        {DNNL_ARG_DIFF_SHIFT, memory(p.row, p.engine)}};
    for (auto _ : state) {
        forward.execute(p.stream, forward_args);
        backward.execute(p.stream, backward_args);
        p.stream.wait();
    }
    state.SetBytesProcessed(state.iterations() * 5 * p.elements * static_cast<std::int64_t>(sizeof(float)));
}

void shapes(benchmark::internal::Benchmark* b) {
    xgrad_bench::bn_shapes(b);
    b->ArgNames({"N", "C", "S", "threads"});
}

}  // namespace

BENCHMARK(BM_onednn_layer_norm_forward_train)->Apply(shapes);
BENCHMARK(BM_onednn_layer_norm_forward_backward_train)->Apply(shapes);

BENCHMARK_MAIN();
