// What oneDNN's batch and layer normalization benchmarks share: inputs filled with normal
// values, the argument maps of a training forward and its backward with scale and shift, and the
// timed loops over them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <unordered_map>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

namespace xgrad_bench {

// The engine and stream, the data's memory descriptor and that of the scale and shift.
struct NormalizationProblem {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    dnnl::memory::desc data;
    dnnl::memory::desc params;
    std::int64_t elements = 0;

    // bytes_per_second of `tensors` tensors of the data's size per iteration.
    void set_bytes(benchmark::State& state, std::int64_t tensors) const {
        state.SetBytesProcessed(state.iterations() * tensors * elements * static_cast<std::int64_t>(sizeof(float)));
    }
};

// A memory of `desc` filled with N(mean, 1) values from `seed`.
inline dnnl::memory filled(const dnnl::memory::desc& desc, const dnnl::engine& engine, float mean, unsigned seed) {
    dnnl::memory m(desc, engine);
    auto* p = static_cast<float*>(m.get_data_handle());
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(mean, 1.0f);
    std::generate(p, p + desc.get_size() / sizeof(float), [&] { return dist(rng); });
    return m;
}

// The tensors of a training forward and backward: data, statistics, scale and shift.
struct NormalizationTensors {
    dnnl::memory src, dst, mean, variance, scale, shift, diff_dst, diff_src, diff_scale, diff_shift;

    std::unordered_map<int, dnnl::memory> forward_args() const {
        return {{DNNL_ARG_SRC, src},           {DNNL_ARG_DST, dst},     {DNNL_ARG_MEAN, mean},
                {DNNL_ARG_VARIANCE, variance}, {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift}};
    }
    std::unordered_map<int, dnnl::memory> backward_args() const {
        return {{DNNL_ARG_SRC, src},           {DNNL_ARG_MEAN, mean},
                {DNNL_ARG_VARIANCE, variance}, {DNNL_ARG_DIFF_DST, diff_dst},
                {DNNL_ARG_SCALE, scale},       {DNNL_ARG_SHIFT, shift},
                {DNNL_ARG_DIFF_SRC, diff_src}, {DNNL_ARG_DIFF_SCALE, diff_scale},
                {DNNL_ARG_DIFF_SHIFT, diff_shift}};
    }
};

// For a primitive descriptor `pd` of a training forward over `data`, with per-channel (or
// per-column) scale and shift of `params`.
template <class ForwardPd>
NormalizationTensors normalization_tensors(const ForwardPd& pd, const dnnl::memory::desc& data,
                                           const dnnl::memory::desc& params, const dnnl::engine& engine) {
    return {filled(data, engine, 0.5f, 1),
            dnnl::memory(data, engine),
            dnnl::memory(pd.mean_desc(), engine),
            dnnl::memory(pd.variance_desc(), engine),
            filled(params, engine, 1.0f, 3),
            filled(params, engine, 0.0f, 4),
            filled(data, engine, 0.0f, 2),
            dnnl::memory(data, engine),
            dnnl::memory(params, engine),
            dnnl::memory(params, engine)};
}

inline constexpr float kEpsilon = 1e-5f;
inline const auto kScaleShift = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

// Times a training forward (Forward: dnnl::batch_normalization_forward or
// dnnl::layer_normalization_forward) over `data` with scale and shift of `params`.
template <class Forward>
void time_forward(benchmark::State& state, NormalizationProblem& p) {
    const typename Forward::primitive_desc pd({dnnl::prop_kind::forward_training, p.data, kEpsilon, kScaleShift},
                                              p.engine);
    const Forward forward(pd);
    const auto args = normalization_tensors(pd, p.data, p.params, p.engine).forward_args();
    for (auto _ : state) {
        forward.execute(p.stream, args);
        p.stream.wait();
    }
    p.set_bytes(state, 2);
}

// Times the training forward and then its backward (Backward, the matching primitive).
template <class Forward, class Backward>
void time_forward_backward(benchmark::State& state, NormalizationProblem& p) {
    const typename Forward::primitive_desc forward_pd(
        {dnnl::prop_kind::forward_training, p.data, kEpsilon, kScaleShift}, p.engine);
    const typename Backward::primitive_desc backward_pd(
        {dnnl::prop_kind::backward, p.data, p.data, kEpsilon, kScaleShift}, p.engine, forward_pd);
    const Forward forward(forward_pd);
    const Backward backward(backward_pd);
    const auto tensors = normalization_tensors(forward_pd, p.data, p.params, p.engine);
    const auto forward_args = tensors.forward_args();
    const auto backward_args = tensors.backward_args();
    for (auto _ : state) {
        forward.execute(p.stream, forward_args);
        backward.execute(p.stream, backward_args);
        p.stream.wait();
    }
    p.set_bytes(state, 5);
}

}  // namespace xgrad_bench
