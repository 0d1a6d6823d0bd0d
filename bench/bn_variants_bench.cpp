// BatchNorm kernels written several ways (bench/variants/bn_variants.hpp) side by side with the
// library's (the normalization stages over Grouping::per_channel, layers/normalization/normalize.hpp),
// on float data: forward-train, backward-train and eval forward, named
// BM_<phase>/<variant>/N:/C:/S:/threads:, where <variant> is
//   xgrad                                        the library's kernel
//   xtensor                                      xt::mean, xt::variance and xtensor expressions
//   <algorithm>/acc_<f32|f64>/<schedule>/<code>  an NCHW variant, forward-train
//   acc_<f32|f64>/<schedule>/<code>              an NCHW variant, backward-train
//   <schedule>/<code>                            an NCHW variant, eval (it sums nothing)
//   nhwc/[acc_<f32|f64>/]<schedule>              the NHWC kernel, on the same values as (N, S, C)
// The backward kernels all start from the library's forward statistics. At S = 1 an NCHW run is
// a single value, so the NCHW variants degenerate into strided scalar code; there (N, C, 1) is
// laid out as (N, 1, C) and the NHWC kernel is the one to compare.
// Counters: bytes_per_second and x_copy, the time over a copy of the same traffic
// (bench/copy_floor.hpp), from each kernel's minimal traffic (forward: read x, write y; backward:
// read dy and x, write dx). Forward-train also reports var_rel_err: on x = 1e4 + N(0, 1), the
// largest relative error of a channel's variance against a two-pass variance in double of the
// same float values.
//
// So that a run with --benchmark_min_time=0.1 takes a minute or two, the serial variants run at the
// seed CNN's shapes only, (64, 32, 784) and (64, 64, 196), with 1 thread (a second one would not
// change them); the library's and the parallel variants run at all the shapes of
// bench/bn_shapes.hpp, with 1 and 2 threads.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include "bench/bn_shapes.hpp"
#include "bench/copy_floor.hpp"
#include "bench/variants/bn_variants.hpp"
#include "layers/normalization/epilogue.hpp"
#include "layers/normalization/normalize.hpp"

namespace {

using bn_variants::Algorithm;
using bn_variants::Code;
using bn_variants::Moments;
using bn_variants::Schedule;
using xgrad::ChannelShape;

constexpr double eps = 1e-5;

// ---- inputs, drawn once per shape for the whole run ----

std::vector<float> normal_vector(std::size_t n, unsigned seed, double mean, double sd) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> dist(mean, sd);
    std::vector<float> v(n);
    for (auto& e : v) e = static_cast<float>(dist(rng));
    return v;
}

// Per channel, the variance of x in double, two-pass, element (n, c, s) being x[index(n, c, s)].
template <class Index>
std::vector<double> reference_var(const ChannelShape& sh, const std::vector<float>& x, const Index& index) {
    std::vector<double> var(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) {
        const auto each = [&](auto f) {
            for (std::size_t n = 0; n < sh.n; ++n)
                for (std::size_t s = 0; s < sh.s; ++s) f(static_cast<double>(x[index(n, c, s)]));
        };
        double sum = 0, sq = 0;
        each([&](double v) { sum += v; });
        const double mean = sum / static_cast<double>(sh.per_channel());
        each([&](double v) { sq += (v - mean) * (v - mean); });
        var[c] = sq / static_cast<double>(sh.per_channel());
    }
    return var;
}

// A BN layer's inputs (x ~ N(0.5, 1), dy ~ N(0, 1), gamma 1, beta 0, running statistics 0 and 1),
// and the large-mean input of var_rel_err with its channels' variances in either layout.
struct Inputs {
    std::vector<float> x, dy, gamma, beta, running_mean, running_var, large_mean_x;
    std::vector<double> large_mean_var_nchw, large_mean_var_nhwc;

    explicit Inputs(const ChannelShape& sh)
        : x(normal_vector(sh.size(), 1, 0.5, 1.0)), dy(normal_vector(sh.size(), 2, 0.0, 1.0)), gamma(sh.c, 1.0f),
          beta(sh.c, 0.0f), running_mean(sh.c, 0.0f), running_var(sh.c, 1.0f),
          large_mean_x(normal_vector(sh.size(), 3, 1e4, 1.0)),
          large_mean_var_nchw(reference_var(sh, large_mean_x, [&](std::size_t n, std::size_t c, std::size_t s) {
              return (n * sh.c + c) * sh.s + s;
          })),
          large_mean_var_nhwc(reference_var(sh, large_mean_x, [&](std::size_t n, std::size_t c, std::size_t s) {
              return (n * sh.s + s) * sh.c + c;
          })) {}
};

// Benchmarks run one after the other, in the main thread.
const Inputs& inputs(const ChannelShape& sh) {
    static std::map<std::array<std::size_t, 3>, Inputs> cache;
    return cache.try_emplace({sh.n, sh.c, sh.s}, sh).first->second;
}

// The state's shape, its inputs and the outputs the kernels write.
struct Layer {
    ChannelShape s;
    const Inputs& in;
    std::vector<float> y, dx, dgamma, dbeta;

    explicit Layer(const benchmark::State& state)
        : s{static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)),
            static_cast<std::size_t>(state.range(2))},
          in(inputs(s)), y(s.size()), dx(s.size()), dgamma(s.c), dbeta(s.c) {}
};

// A forward's statistics, in the two forms the backward kernels take.
struct Statistics {
    Moments moments;
    xgrad::NormalizedBatch batch;

    explicit Statistics(Moments m) : moments(std::move(m)) {
        batch.norm.mean = moments.mean;
        for (const double v : moments.var) batch.norm.invstd.push_back(xgrad::inverse_std(v, eps));
    }
};

// ---- the kernels, as the benchmarks call them ----

enum class Layout { nchw, nhwc };

using ForwardTrain = std::function<Moments(Layer&, const float* x)>;
using BackwardTrain = std::function<void(Layer&, const Statistics&)>;
using ForwardEval = std::function<void(Layer&)>;

template <class Kernel>
struct Variant {
    std::string name;
    Kernel kernel;
    bool parallel;  // may use a second thread: run at all the shapes, with 1 and 2 threads
    Layout layout = Layout::nchw;
};

template <class Acc>
std::string acc_name() {
    return sizeof(Acc) == sizeof(float) ? "acc_f32" : "acc_f64";
}

std::string exec_name(Schedule s, Code code) { return std::string(name(s)) + "/" + std::string(name(code)); }

// The library's options for the layer's gamma and beta.
xgrad::NormalizeOptions<float> options_of(const Layer& l) {
    xgrad::NormalizeOptions<float> options;
    options.eps = eps;
    options.gamma = l.in.gamma.data();
    options.beta = l.in.beta.data();
    return options;
}

Moments xgrad_forward(Layer& l, const float* x) {
    const auto batch =
        xgrad::normalize_batch(xgrad::Grouping::per_channel(l.s), x, options_of(l), xgrad::NoEpilogue{}, l.y.data());
    Moments m{batch.norm.mean, {}};
    for (const double invstd : batch.norm.invstd) m.var.push_back(1.0 / (invstd * invstd) - eps);
    return m;
}

template <class Acc>
Variant<ForwardTrain> nchw_forward(Algorithm a, Schedule s, Code code) {
    return {std::string(name(a)) + "/" + acc_name<Acc>() + "/" + exec_name(s, code),
            [=](Layer& l, const float* x) {
                return bn_variants::forward_train<float, Acc>(l.s, x, l.in.gamma.data(), l.in.beta.data(), eps,
                                                              l.y.data(), a, code, {s});
            },
            s != Schedule::serial};
}

template <class Acc>
Variant<ForwardTrain> nhwc_forward(Schedule s) {
    return {"nhwc/" + acc_name<Acc>() + "/" + std::string(name(s)),
            [=](Layer& l, const float* x) {
                return bn_variants::nhwc::forward_train<float, Acc>(l.s, x, l.in.gamma.data(), l.in.beta.data(), eps,
                                                                    l.y.data(), {s});
            },
            s != Schedule::serial, Layout::nhwc};
}

template <class Acc>
Variant<BackwardTrain> nchw_backward(Schedule s, Code code) {
    return {acc_name<Acc>() + "/" + exec_name(s, code),
            [=](Layer& l, const Statistics& st) {
                bn_variants::backward_train<float, Acc>(l.s, l.in.dy.data(), l.in.x.data(), l.in.gamma.data(),
                                                        st.moments, eps, l.dx.data(), l.dgamma.data(), l.dbeta.data(),
                                                        code, {s});
            },
            s != Schedule::serial};
}

template <class Acc>
Variant<BackwardTrain> nhwc_backward(Schedule s) {
    return {"nhwc/" + acc_name<Acc>() + "/" + std::string(name(s)),
            [=](Layer& l, const Statistics& st) {
                bn_variants::nhwc::backward_train<float, Acc>(l.s, l.in.dy.data(), l.in.x.data(), l.in.gamma.data(),
                                                              st.moments, eps, l.dx.data(), l.dgamma.data(),
                                                              l.dbeta.data(), {s});
            },
            s != Schedule::serial, Layout::nhwc};
}

Variant<ForwardEval> nchw_eval(Schedule s, Code code) {
    return {exec_name(s, code),
            [=](Layer& l) {
                bn_variants::forward_eval<float>(l.s, l.in.x.data(), l.in.gamma.data(), l.in.beta.data(),
                                                 l.in.running_mean.data(), l.in.running_var.data(), eps, l.y.data(),
                                                 code, {s});
            },
            s != Schedule::serial};
}

Variant<ForwardEval> nhwc_eval(Schedule s) {
    return {"nhwc/" + std::string(name(s)),
            [=](Layer& l) {
                bn_variants::nhwc::forward_eval<float>(l.s, l.in.x.data(), l.in.gamma.data(), l.in.beta.data(),
                                                       l.in.running_mean.data(), l.in.running_var.data(), eps,
                                                       l.y.data(), {s});
            },
            s != Schedule::serial, Layout::nhwc};
}

constexpr Algorithm kAlgorithms[] = {Algorithm::two_pass, Algorithm::one_pass, Algorithm::welford,
                                     Algorithm::chunked_welford};

std::vector<Variant<ForwardTrain>> forward_train_variants() {
    std::vector<Variant<ForwardTrain>> v{
        {"xgrad", xgrad_forward, true},
        {"xtensor",
         [](Layer& l, const float* x) {
             return bn_variants::xtensor::forward_train<float>(l.s, x, l.in.gamma.data(), l.in.beta.data(), eps,
                                                               l.y.data());
         },
         false},
    };
    for (const Algorithm a : kAlgorithms) {
        v.push_back(nchw_forward<double>(a, Schedule::serial, Code::plain));
        v.push_back(nchw_forward<float>(a, Schedule::serial, Code::plain));
        v.push_back(nchw_forward<float>(a, Schedule::serial, Code::xsimd));
    }
    v.push_back(nchw_forward<double>(Algorithm::two_pass, Schedule::serial, Code::xsimd));
    v.push_back(nchw_forward<double>(Algorithm::two_pass, Schedule::over_channels, Code::plain));
    for (const Algorithm a : kAlgorithms) v.push_back(nchw_forward<double>(a, Schedule::over_blocks, Code::plain));
    v.push_back(nchw_forward<float>(Algorithm::two_pass, Schedule::over_blocks, Code::xsimd));
    v.push_back(nchw_forward<float>(Algorithm::one_pass, Schedule::over_blocks, Code::xsimd));
    v.push_back(nhwc_forward<double>(Schedule::serial));
    v.push_back(nhwc_forward<float>(Schedule::serial));
    v.push_back(nhwc_forward<double>(Schedule::over_blocks));
    return v;
}

std::vector<Variant<BackwardTrain>> backward_train_variants() {
    return {
        {"xgrad",
         [](Layer& l, const Statistics& st) {
             xgrad::normalize_backward(xgrad::Grouping::per_channel(l.s), st.batch, xgrad::GradientThrough::batch(),
                                       l.in.dy.data(), l.in.x.data(), l.in.gamma.data(), l.in.beta.data(),
                                       xgrad::NoEpilogue{},
                                       xgrad::NormalizeGrads<float>{l.dx.data(), l.dgamma.data(), l.dbeta.data()});
         },
         true},
        {"xtensor",
         [](Layer& l, const Statistics& st) {
             bn_variants::xtensor::backward_train<float>(l.s, l.in.dy.data(), l.in.x.data(), l.in.gamma.data(),
                                                         st.moments, eps, l.dx.data(), l.dgamma.data(), l.dbeta.data());
         },
         false},
        nchw_backward<double>(Schedule::serial, Code::plain),
        nchw_backward<float>(Schedule::serial, Code::plain),
        nchw_backward<double>(Schedule::serial, Code::xsimd),
        nchw_backward<float>(Schedule::serial, Code::xsimd),
        nchw_backward<double>(Schedule::over_channels, Code::plain),
        nchw_backward<double>(Schedule::over_blocks, Code::plain),
        nchw_backward<float>(Schedule::over_blocks, Code::xsimd),
        nhwc_backward<double>(Schedule::serial),
        nhwc_backward<double>(Schedule::over_blocks),
    };
}

std::vector<Variant<ForwardEval>> forward_eval_variants() {
    return {
        {"xgrad",
         [](Layer& l) {
             const auto running =
                 xgrad::running_normalization(l.in.running_mean.data(), l.in.running_var.data(), l.s.c, eps);
             xgrad::normalize_with(xgrad::Grouping::per_channel(l.s), running, l.in.x.data(), options_of(l),
                                   xgrad::NoEpilogue{}, l.y.data());
         },
         true},
        {"xtensor",
         [](Layer& l) {
             bn_variants::xtensor::forward_eval<float>(l.s, l.in.x.data(), l.in.gamma.data(), l.in.beta.data(),
                                                       l.in.running_mean.data(), l.in.running_var.data(), eps,
                                                       l.y.data());
         },
         false},
        nchw_eval(Schedule::serial, Code::plain),
        nchw_eval(Schedule::serial, Code::xsimd),
        nchw_eval(Schedule::over_channels, Code::plain),
        nchw_eval(Schedule::over_blocks, Code::plain),
        nchw_eval(Schedule::over_blocks, Code::xsimd),
        nhwc_eval(Schedule::serial),
        nhwc_eval(Schedule::over_blocks),
    };
}

// ---- the benchmarks ----

tbb::global_control threads_of(const benchmark::State& state) {
    return tbb::global_control(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(state.range(3)));
}

// Counters from the kernel's minimal traffic: `tensors` float tensors of the layer's shape.
void set_traffic(benchmark::State& state, const Layer& l, std::size_t tensors) {
    xgrad_bench::set_traffic_counters(state, tensors * l.s.size() * sizeof(float), static_cast<int>(state.range(3)));
}

void forward_train(benchmark::State& state, const Variant<ForwardTrain>& v) {
    auto threads = threads_of(state);
    Layer l(state);
    const Moments large = v.kernel(l, l.in.large_mean_x.data());
    const auto& reference = v.layout == Layout::nchw ? l.in.large_mean_var_nchw : l.in.large_mean_var_nhwc;
    double var_rel_err = 0;
    for (std::size_t c = 0; c < l.s.c; ++c) {
        var_rel_err = std::max(var_rel_err, std::abs(large.var[c] - reference[c]) / reference[c]);
    }
    for (auto _ : state) {
        const Moments m = v.kernel(l, l.in.x.data());
        benchmark::DoNotOptimize(m.var.data());
        benchmark::DoNotOptimize(l.y.data());
    }
    set_traffic(state, l, 2);
    state.counters["var_rel_err"] = var_rel_err;
}

void backward_train(benchmark::State& state, const Variant<BackwardTrain>& v) {
    auto threads = threads_of(state);
    Layer l(state);
    const Statistics st(xgrad_forward(l, l.in.x.data()));
    for (auto _ : state) {
        v.kernel(l, st);
        benchmark::DoNotOptimize(l.dx.data());
    }
    set_traffic(state, l, 3);
}

void forward_eval(benchmark::State& state, const Variant<ForwardEval>& v) {
    auto threads = threads_of(state);
    Layer l(state);
    for (auto _ : state) {
        v.kernel(l);
        benchmark::DoNotOptimize(l.y.data());
    }
    set_traffic(state, l, 2);
}

// The seed CNN's bn1 and bn2 at batch 64, the first two shapes of bench/bn_shapes.hpp, 1 thread.
void seed_shapes(benchmark::internal::Benchmark* b) {
    b->Args({64, 32, 28 * 28, 1})->Args({64, 64, 14 * 14, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

template <class Kernel, class Run>
void register_all(const std::string& phase, const std::vector<Variant<Kernel>>& variants, Run run) {
    for (const auto& v : variants) {
        auto* b = benchmark::RegisterBenchmark(("BM_" + phase + "/" + v.name).c_str(),
                                               [v, run](benchmark::State& state) { run(state, v); });
        if (v.parallel) {
            xgrad_bench::bn_shapes(b);
        } else {
            seed_shapes(b);
        }
        b->ArgNames({"N", "C", "S", "threads"});
    }
}

const bool registered = [] {
    register_all("forward_train", forward_train_variants(), forward_train);
    register_all("backward_train", backward_train_variants(), backward_train);
    register_all("forward_eval", forward_eval_variants(), forward_eval);
    return true;
}();

}  // namespace
