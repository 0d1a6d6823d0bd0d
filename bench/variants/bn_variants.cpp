// The NCHW variants: the statistics algorithms over runs of S contiguous values (channel c's run
// at sample n starts at (n·C + c)·S), the backward sums, and the elementwise passes, each written
// once over a Code policy (code.hpp) and a Schedule (schedule.hpp).
#include "bench/variants/bn_variants.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "bench/variants/code.hpp"
#include "bench/variants/coefficients.hpp"
#include "bench/variants/schedule.hpp"
#include "bench/variants/welford.hpp"

namespace bn_variants {

std::string_view name(Algorithm a) {
    switch (a) {
        case Algorithm::two_pass: return "two_pass";
        case Algorithm::one_pass: return "one_pass";
        case Algorithm::welford: return "welford";
        case Algorithm::chunked_welford: return "chunked_welford";
    }
    throw std::invalid_argument("bn_variants: unknown Algorithm");
}

std::string_view name(Schedule s) {
    switch (s) {
        case Schedule::serial: return "serial";
        case Schedule::over_channels: return "over_channels";
        case Schedule::over_blocks: return "over_blocks";
    }
    throw std::invalid_argument("bn_variants: unknown Schedule");
}

std::string_view name(Code c) {
    switch (c) {
        case Code::plain: return "plain";
        case Code::xsimd: return "xsimd";
    }
    throw std::invalid_argument("bn_variants: unknown Code");
}

namespace {

using namespace detail;

// chunked_welford: values per chunk, at most. A float chunk (4 KiB) is still in L1 when its second
// pass reads it again.
constexpr std::size_t kChunk = 1024;

// f(policy) with the policy of `code`.
template <class F>
decltype(auto) with_code(Code code, const F& f) {
    if (code == Code::xsimd) return f(Xsimd{});
    return f(Plain{});
}

// f(c, offset) for the runs of samples [n0, n1) of channels [c0, c1), in memory order.
template <class F>
void for_runs(const ChannelShape& sh, std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1, const F& f) {
    for (std::size_t n = n0; n < n1; ++n) {
        for (std::size_t c = c0; c < c1; ++c) f(c, (n * sh.c + c) * sh.s);
    }
}

// One State per channel: fold(state, c, offset) folds a run into its channel's state.
template <class State, class Fold, class Merge>
std::vector<State> fold_runs(const ChannelShape& sh, const Parallel& par, const Fold& fold, const Merge& merge) {
    const auto add = [&](State* states, std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
        for_runs(sh, n0, n1, c0, c1, [&](std::size_t c, std::size_t off) { fold(states[c - c0], c, off); });
    };
    return reduce<State>(sh, par, add, merge);
}

// Per channel, the K sums over its runs of run_term(c, offset), a term of Runs::sums.
template <class Acc, std::size_t K, class Runs, class RunTerm>
std::vector<std::array<Acc, K>> channel_sums(const ChannelShape& sh, const Parallel& par, const RunTerm& run_term) {
    const auto fold = [&](std::array<Acc, K>& s, std::size_t c, std::size_t off) {
        AddSums{}(s, Runs::template sums<Acc, K>(sh.s, run_term(c, off)));
    };
    return fold_runs<std::array<Acc, K>>(sh, par, fold, AddSums{});
}

// The terms the kernels sum, over a run at p (and at q).
template <class T>
auto values(const T* p) {
    return [p](auto at) { return std::array{at(p)}; };
}

template <class T>
auto values_and_squares(const T* p) {
    return [p](auto at) {
        const auto v = at(p);
        return std::array{v, v * v};
    };
}

template <class T, class Acc>
auto centred_squares(const T* p, Acc centre) {
    return [p, centre](auto at) {
        const auto d = at(p) - centre;
        return std::array{d * d};
    };
}

// {dy, dy·(x - centre)} with dy at p and x at q.
template <class T, class Acc>
auto grads_and_centred_products(const T* p, const T* q, Acc centre) {
    return [p, q, centre](auto at) {
        const auto g = at(p);
        return std::array{g, g * (at(q) - centre)};
    };
}

template <class Acc>
Moments moments_of(const std::vector<Acc>& mean, const std::vector<Acc>& var) {
    return {std::vector<double>(mean.begin(), mean.end()), std::vector<double>(var.begin(), var.end())};
}

template <class Acc, class Runs, class T>
Moments two_pass(const ChannelShape& sh, const T* x, const Parallel& par) {
    const Acc n = static_cast<Acc>(sh.per_channel());
    const auto sum = channel_sums<Acc, 1, Runs>(sh, par, [x](std::size_t, std::size_t off) { return values(x + off); });
    std::vector<Acc> mean(sh.c), var(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) mean[c] = sum[c][0] / n;
    const auto sq = channel_sums<Acc, 1, Runs>(
        sh, par, [x, &mean](std::size_t c, std::size_t off) { return centred_squares(x + off, mean[c]); });
    for (std::size_t c = 0; c < sh.c; ++c) var[c] = sq[c][0] / n;
    return moments_of(mean, var);
}

template <class Acc, class Runs, class T>
Moments one_pass(const ChannelShape& sh, const T* x, const Parallel& par) {
    const Acc n = static_cast<Acc>(sh.per_channel());
    const auto s =
        channel_sums<Acc, 2, Runs>(sh, par, [x](std::size_t, std::size_t off) { return values_and_squares(x + off); });
    std::vector<Acc> mean(sh.c), var(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) {
        mean[c] = s[c][0] / n;
        // Once E[x²] and mean² cancel, rounding can leave their difference below 0.
        var[c] = std::max(Acc(0), s[c][1] / n - mean[c] * mean[c]);
    }
    return moments_of(mean, var);
}

template <class Acc>
Moments moments_of(const std::vector<Welford<Acc>>& states) {
    std::vector<Acc> mean, var;
    for (const auto& s : states) {
        mean.push_back(s.mean);
        var.push_back(s.m2 / static_cast<Acc>(s.count));
    }
    return moments_of(mean, var);
}

constexpr auto merge_welford = [](auto& into, const auto& from) { into.merge(from); };

template <class Acc, class Runs, class T>
Moments welford(const ChannelShape& sh, const T* x, const Parallel& par) {
    const auto fold = [&](Welford<Acc>& s, std::size_t, std::size_t off) {
        s.merge(Runs::template welford<Acc>(x + off, sh.s));
    };
    return moments_of(fold_runs<Welford<Acc>>(sh, par, fold, merge_welford));
}

template <class Acc, class Runs, class T>
Moments chunked_welford(const ChannelShape& sh, const T* x, const Parallel& par) {
    const auto fold = [&](Welford<Acc>& s, std::size_t, std::size_t off) {
        for (std::size_t i = 0; i < sh.s; i += kChunk) {
            const std::size_t len = std::min(kChunk, sh.s - i);
            const T* p = x + off + i;
            const Acc mean = Runs::template sums<Acc, 1>(len, values(p))[0] / static_cast<Acc>(len);
            const Acc m2 = Runs::template sums<Acc, 1>(len, centred_squares(p, mean))[0];
            s.merge(Welford<Acc>{len, mean, m2});
        }
    };
    return moments_of(fold_runs<Welford<Acc>>(sh, par, fold, merge_welford));
}

// out = (in - centre)·scale + shift.
template <class T>
void affine_pass(const ChannelShape& sh, const Affine<T>& a, const T* in, T* out, Code code, const Parallel& par) {
    with_code(code, [&](auto runs) {
        using Runs = decltype(runs);
        for_pieces(sh, par, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
            for_runs(sh, n0, n1, c0, c1, [&](std::size_t c, std::size_t off) {
                Runs::map(out + off, sh.s, [p = in + off, ce = a.centre.at(c), sc = a.scale.at(c),
                                                      sf = a.shift.at(c)](auto at) {
                    return mul_add(at(p) - ce, sc, sf);
                });
            });
        });
    });
}

// dx = dy·alpha + ((x - centre)·k + shift).
template <class T>
void input_grad_pass(const ChannelShape& sh, const InputGrad<T>& g, const T* dy, const T* x, T* dx, Code code,
                     const Parallel& par) {
    with_code(code, [&](auto runs) {
        using Runs = decltype(runs);
        for_pieces(sh, par, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
            for_runs(sh, n0, n1, c0, c1, [&](std::size_t c, std::size_t off) {
                Runs::map(dx + off, sh.s,
                          [p = dy + off, q = x + off, al = g.alpha.at(c), ce = g.centre.at(c), k = g.k.at(c),
                           sf = g.shift.at(c)](
                              auto at) { return mul_add(at(p), al, mul_add(at(q) - ce, k, sf)); });
            });
        });
    });
}

}  // namespace

template <class T, class Acc>
Moments batch_stats(const ChannelShape& shape, const T* x, Algorithm algorithm, Code code, const Parallel& parallel) {
    return with_code(code, [&](auto runs) {
        using Runs = decltype(runs);
        switch (algorithm) {
            case Algorithm::two_pass: return two_pass<Acc, Runs>(shape, x, parallel);
            case Algorithm::one_pass: return one_pass<Acc, Runs>(shape, x, parallel);
            case Algorithm::welford: return welford<Acc, Runs>(shape, x, parallel);
            case Algorithm::chunked_welford: return chunked_welford<Acc, Runs>(shape, x, parallel);
        }
        throw std::invalid_argument("bn_variants: unknown Algorithm");
    });
}

template <class T, class Acc>
Moments forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, double eps, T* y,
                      Algorithm algorithm, Code code, const Parallel& parallel) {
    Moments m = batch_stats<T, Acc>(shape, x, algorithm, code, parallel);
    affine_pass(shape, normalization(shape, batch_normalization(m, eps), gamma, beta), x, y, code, parallel);
    return m;
}

template <class T, class Acc>
void backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const Moments& moments,
                    double eps, T* dx, T* dgamma, T* dbeta, Code code, const Parallel& parallel) {
    const auto sums = with_code(code, [&](auto runs) {
        return channel_sums<Acc, 2, decltype(runs)>(shape, parallel, [&](std::size_t c, std::size_t off) {
            return grads_and_centred_products(dy + off, x + off, static_cast<Acc>(centre_of<T>(moments.mean[c])));
        });
    });
    const InputGrad<T> g = input_gradient(shape, moments, gamma, eps, sums, dgamma, dbeta);
    input_grad_pass(shape, g, dy, x, dx, code, parallel);
}

template <class T>
void forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, const T* running_mean,
                  const T* running_var, double eps, T* y, Code code, const Parallel& parallel) {
    const auto running = xgrad::running_normalization(running_mean, running_var, shape.c, eps);
    affine_pass(shape, normalization(shape, running, gamma, beta), x, y, code, parallel);
}

#define BN_VARIANTS_TRAIN(T, Acc)                                                                                     \
    template Moments batch_stats<T, Acc>(const ChannelShape&, const T*, Algorithm, Code, const Parallel&);            \
    template Moments forward_train<T, Acc>(const ChannelShape&, const T*, const T*, const T*, double, T*, Algorithm, \
                                           Code, const Parallel&);                                                   \
    template void backward_train<T, Acc>(const ChannelShape&, const T*, const T*, const T*, const Moments&, double,   \
                                         T*, T*, T*, Code, const Parallel&);
BN_VARIANTS_TRAIN(float, float)
BN_VARIANTS_TRAIN(float, double)
BN_VARIANTS_TRAIN(double, double)
#undef BN_VARIANTS_TRAIN

template void forward_eval<float>(const ChannelShape&, const float*, const float*, const float*, const float*,
                                  const float*, double, float*, Code, const Parallel&);
template void forward_eval<double>(const ChannelShape&, const double*, const double*, const double*, const double*,
                                   const double*, double, double*, Code, const Parallel&);

}  // namespace bn_variants
