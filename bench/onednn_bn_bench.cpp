// oneDNN's batch normalization (Debian's libdnnl 2.6, the fastest CPU BN kernel available here),
// the reference for xgrad's BN kernels: forward-train and forward-train + backward, f32, with
// scale and shift, in NCHW (xgrad's layout) and NHWC (where oneDNN keeps a block of channels in
// cache across its passes), at the shapes of bench/bn_shapes.hpp, 1 and 2 OpenMP threads.
// Arguments: N, C, S (= H*W, H = W when S is a square), threads, layout (0 NCHW, 1 NHWC).
// bytes_per_second counts the same minimal traffic as batch_norm_bench.
#include <omp.h>

#include <cmath>
#include <cstdint>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bn_shapes.hpp"
#include "bench/onednn_normalization.hpp"

namespace {

using dnnl::memory;

constexpr float epsilon = 1e-5f;

struct Problem {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    memory::desc data;
    memory::desc channels;
    std::int64_t elements;

    explicit Problem(const benchmark::State& state) {
        const std::int64_t n = state.range(0), c = state.range(1), s = state.range(2);
        const auto tag = state.range(4) == 1 ? memory::format_tag::nhwc : memory::format_tag::nchw;
        // Square images as the shapes stand for (784 = 28 x 28): oneDNN's NHWC kernel blocks
        // over W, so (S, 1) would not be the problem it is tuned for.
        std::int64_t h = static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(s))));
        if (h * h != s) h = s;
        data = memory::desc({n, c, h, s / h}, memory::data_type::f32, tag);
        channels = memory::desc({c}, memory::data_type::f32, memory::format_tag::a);
        elements = n * c * s;
    }
};

const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

void set_threads_and_label(benchmark::State& state) {
    omp_set_num_threads(static_cast<int>(state.range(3)));
    state.SetLabel(state.range(4) == 1 ? "NHWC" : "NCHW");
}

void set_bytes(benchmark::State& state, std::int64_t elements, std::int64_t tensors) {
    state.SetBytesProcessed(state.iterations() * tensors * elements * static_cast<std::int64_t>(sizeof(float)));
}

void BM_onednn_forward_train(benchmark::State& state) {
    set_threads_and_label(state);
    Problem p(state);
    const dnnl::batch_normalization_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_training, p.data, epsilon, flags}, p.engine);
    const dnnl::batch_normalization_forward forward(pd);
    const auto args = xgrad_bench::normalization_tensors(pd, p.data, p.channels, p.engine).forward_args();
    for (auto _ : state) {
        forward.execute(p.stream, args);
        p.stream.wait();
    }
    set_bytes(state, p.elements, 2);
}

void BM_onednn_forward_backward(benchmark::State& state) {
    set_threads_and_label(state);
    Problem p(state);
    const dnnl::batch_normalization_forward::primitive_desc forward_pd(
        {dnnl::prop_kind::forward_training, p.data, epsilon, flags}, p.engine);
    const dnnl::batch_normalization_backward::primitive_desc backward_pd(
        {dnnl::prop_kind::backward, p.data, p.data, epsilon, flags}, p.engine, forward_pd);
    const dnnl::batch_normalization_forward forward(forward_pd);
    const dnnl::batch_normalization_backward backward(backward_pd);
    const auto tensors = xgrad_bench::normalization_tensors(forward_pd, p.data, p.channels, p.engine);
    const auto forward_args = tensors.forward_args();
    const auto backward_args = tensors.backward_args();
    for (auto _ : state) {
        forward.execute(p.stream, forward_args);
        backward.execute(p.stream, backward_args);
        p.stream.wait();
    }
    set_bytes(state, p.elements, 5);
}

void shapes_and_layouts(benchmark::internal::Benchmark* b) {
    for (std::int64_t layout : {0, 1}) xgrad_bench::bn_shapes(b, {layout});
    b->ArgNames({"N", "C", "S", "threads", "nhwc"});
}

}  // namespace

BENCHMARK(BM_onednn_forward_train)->Apply(shapes_and_layouts);
BENCHMARK(BM_onednn_forward_backward)->Apply(shapes_and_layouts);

BENCHMARK_MAIN();
