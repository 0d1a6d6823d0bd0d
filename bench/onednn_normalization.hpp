// What oneDNN's batch and layer normalization benchmarks share: inputs filled with normal
// values, and the argument maps of a training forward and its backward with scale and shift.
#pragma once

#include <algorithm>
#include <random>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

namespace xgrad_bench {

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

}  // namespace xgrad_bench
