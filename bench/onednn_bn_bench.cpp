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

xgrad_bench::NormalizationProblem problem(benchmark::State& state) {
    omp_set_num_threads(static_cast<int>(state.range(3)));
    state.SetLabel(state.range(4) == 1 ? "NHWC" : "NCHW");
    const std::int64_t n = state.range(0), c = state.range(1), s = state.range(2);
    const auto tag = state.range(4) == 1 ? memory::format_tag::nhwc : memory::format_tag::nchw;
    // Square images as the shapes stand for (784 = 28 x 28): oneDNN's NHWC kernel blocks
    // over W, so (S, 1) would not be the problem it is tuned for.
    std::int64_t h = static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(s))));
    if (h * h != s) h = s;
    xgrad_bench::NormalizationProblem p;
    p.data = memory::desc({n, c, h, s / h}, memory::data_type::f32, tag);
    p.params = memory::desc({c}, memory::data_type::f32, memory::format_tag::a);
    p.elements = n * c * s;
    return p;
}

void BM_onednn_forward_train(benchmark::State& state) {
    auto p = problem(state);
    xgrad_bench::time_forward<dnnl::batch_normalization_forward>(state, p);
}

void BM_onednn_forward_backward(benchmark::State& state) {
    auto p = problem(state);
    xgrad_bench::time_forward_backward<dnnl::batch_normalization_forward, dnnl::batch_normalization_backward>(state, p);
}

void shapes_and_layouts(benchmark::internal::Benchmark* b) {
    for (std::int64_t layout : {0, 1}) xgrad_bench::bn_shapes(b, {layout});
    b->ArgNames({"N", "C", "S", "threads", "nhwc"});
}

}  // namespace

BENCHMARK(BM_onednn_forward_train)->Apply(shapes_and_layouts);
BENCHMARK(BM_onednn_forward_backward)->Apply(shapes_and_layouts);

BENCHMARK_MAIN();
