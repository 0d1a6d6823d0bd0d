// GroupNorm, LayerNorm and InstanceNorm1d/2d, in double unless said otherwise: the forward and its
// gradients against naive loops in long double, and the gradients against central differences
// (training and eval, affine or not, through the statistics, and through running statistics in
// InstanceNorm's eval), on small shapes element by element and, in fewer cases, on shapes past the
// cache-block and thread thresholds along random directions; identities (GroupNorm with G = C is
// InstanceNorm with affine bit for bit; GroupNorm with G = 1 normalizes as LayerNorm over (C, H, W)
// does); the same bits with one and two threads on large shapes, float and double; InstanceNorm's
// running statistics; torch's reprs and state names; and the errors for bad input.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <tbb/task_arena.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xview.hpp>

#include "layers/normalization/blocked.hpp"
#include "layers/normalization/channel_reduce.hpp"
#include "layers/normalization/group_norm.hpp"
#include "layers/normalization/group_norm_kernel.hpp"
#include "layers/normalization/instance_norm.hpp"
#include "layers/normalization/layer_norm.hpp"
#include "layers/normalization/layer_norm_kernel.hpp"
#include "tests/generators.hpp"
#include "tests/large_gradcheck.hpp"
#include "tests/streamed_walk.hpp"
#include "tests/error_message.hpp"

namespace {

using namespace xgrad_test;
using Inputs = std::vector<Var<double>>;
using Index = std::function<std::size_t(std::size_t)>;
using xgrad::GroupNorm;
using xgrad::InstanceNorm;
using xgrad::InstanceNorm1d;
using xgrad::InstanceNorm2d;
using xgrad::LayerNorm;
using xgrad::Module;

constexpr double eps = 1e-5;

// ---- a layer's state, by name ----

template <class T>
std::optional<Var<T>> parameter(const Module<T>& m, const std::string& name) {
    for (const auto& [n, p] : m.named_parameters()) {
        if (n == name) return p;
    }
    return std::nullopt;
}

template <class T>
xgrad::BufferRef<T> buffer(const Module<T>& m, const std::string& name) {
    for (const auto& [n, b] : m.named_buffers()) {
        if (n == name) return b;
    }
    throw std::logic_error("no buffer " + name);
}

template <class T>
std::vector<std::string> stateNames(const Module<T>& m) {
    std::vector<std::string> names;
    for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
    for (const auto& [name, b] : m.named_buffers()) names.push_back(name);
    return names;
}

// ---- the naive reference ----

// Per group, where eval normalizes with given statistics (InstanceNorm's running ones).
struct Fixed {
    std::vector<double> mean, var;
};

template <class T>
struct Outputs {
    xt::xarray<T> y, dx, dweight, dbias;  // dweight and dbias empty without parameters
};

// A normalization by explicit loops in long double: element i is in group group(i) of `groups` and
// reads gamma and beta (null: 1 and 0) at param(i). Without `fixed` the groups' own mean and biased
// variance, with the gradient through them; with it, constants. dy is the output gradient.
Outputs<double> naiveNormalization(const Array& x, const Array& dy, const Array* gamma, const Array* beta,
                                   std::size_t groups, const Index& group, const Index& param,
                                   const Fixed* fixed = nullptr) {
    std::vector<long double> count(groups), mean(groups), var(groups), invstd(groups), sum_g(groups), sum_gx(groups);
    for (std::size_t i = 0; i < x.size(); ++i) {
        count[group(i)] += 1;
        mean[group(i)] += x.flat(i);
    }
    for (std::size_t g = 0; g < groups; ++g) mean[g] /= count[g];
    for (std::size_t i = 0; i < x.size(); ++i) {
        const long double d = x.flat(i) - mean[group(i)];
        var[group(i)] += d * d;
    }
    for (std::size_t g = 0; g < groups; ++g) {
        var[g] /= count[g];
        if (fixed) {
            mean[g] = fixed->mean[g];
            var[g] = fixed->var[g];
        }
        invstd[g] = 1.0L / std::sqrt(var[g] + static_cast<long double>(eps));
    }
    const auto xhat = [&](std::size_t i) { return (x.flat(i) - mean[group(i)]) * invstd[group(i)]; };
    const auto gamma_of = [&](std::size_t i) { return gamma ? static_cast<long double>(gamma->flat(param(i))) : 1.0L; };
    Outputs<double> out{Array::from_shape(x.shape()), Array::from_shape(x.shape()), {}, {}};
    if (gamma) {
        out.dweight = xt::zeros<double>(gamma->shape());
        out.dbias = xt::zeros<double>(gamma->shape());
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
        const long double g = dy.flat(i) * gamma_of(i);
        sum_g[group(i)] += g;
        sum_gx[group(i)] += g * xhat(i);
        out.y.flat(i) = static_cast<double>(gamma_of(i) * xhat(i) + (beta ? beta->flat(param(i)) : 0.0));
        if (gamma) {
            out.dweight.flat(param(i)) += static_cast<double>(dy.flat(i) * xhat(i));
            out.dbias.flat(param(i)) += dy.flat(i);
        }
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
        const std::size_t k = group(i);
        const long double g = dy.flat(i) * gamma_of(i);
        const long double through = fixed ? 0.0L : sum_g[k] / count[k] + xhat(i) * sum_gx[k] / count[k];
        out.dx.flat(i) = static_cast<double>(invstd[k] * (g - through));
    }
    return out;
}

// Forward of x and backward of dy through the layer.
template <class T>
Outputs<T> run(Module<T>& layer, const xt::xarray<T>& x, const xt::xarray<T>& dy) {
    layer.zero_grad();
    Var<T> xv(x, true);
    const Var<T> y = layer(xv);
    y.backward(dy);
    Outputs<T> out{y.value(), xv.grad(), {}, {}};
    if (const auto w = parameter(layer, "weight")) out.dweight = w->grad();
    if (const auto b = parameter(layer, "bias")) out.dbias = b->grad();
    return out;
}

// ---- the cases the properties draw ----

// A layer in a mode, an input shape for it, and how the reference sees it.
struct Case {
    std::shared_ptr<Module<double>> layer;
    Shape shape;
    bool large = false;  // past the thresholds: checked along directions, not element by element
    std::size_t groups = 0;
    Index group, param;
    std::optional<Fixed> fixed;
};

// Values on `domain`: drawn and shrunk element by element, or, for a large case, from one seed
// and not shrunk (a failure is then reported as drawn, rather than after thousands of large runs).
Array drawValues(const Shape& shape, Domain domain, bool large) {
    return large ? *rc::gen::noShrink(genBulkArray(shape, domain)) : *genArray(shape, domain);
}

// Weight and bias on [-2, 2], when the layer has them.
void drawParameters(Module<double>& layer, bool large) {
    for (auto& [name, p] : layer.named_parameters()) p.mutable_value() = drawValues(p.shape(), anywhere(-2, 2), large);
}

// A large shape with its first dim grown by up to 3, so that sizes vary from case to case.
Shape grown(Shape shape) {
    shape[0] += *uniformIn<std::size_t>(0, 4);
    return shape;
}

// (N, C, S) strides of an (N, C, *) shape: element i is in sample i / (C·S) and channel (i / S) % C.
struct Layout {
    std::size_t n, c, s;
    explicit Layout(const Shape& shape, bool batched = true)
        : n(batched ? shape[0] : 1), c(shape[batched ? 1 : 0]), s(xgrad::element_count(shape) / (n * c)) {}
    std::size_t sample(std::size_t i) const { return i / (c * s); }
    std::size_t channel(std::size_t i) const { return (i / s) % c; }
};

// Large shapes: groups in blocks that stay in cache, in parallel; a group past the cache block
// (more than 1 MiB / 16 bytes); groups of a few elements (the reduction's rows layout); groups of
// 32 elements at S = 1 (rows per group, group_norm_kernel.hpp). Small shapes: also, in fewer
// cases, groups of at least 16 elements over fewer than 16 positions (rows per group).
Case drawGroupNorm(bool large) {
    Shape shape;
    std::size_t groups = 0;
    if (large) {
        const std::size_t pick = *uniformIn<std::size_t>(0, 4);
        shape = grown(std::vector<Shape>{{4, 8, 48, 48}, {2, 4, 180, 200}, {12000, 12}, {3000, 64}}[pick]);
        groups = std::vector<std::size_t>{4, 2, 3, 2}[pick];
    } else if (*uniformIn<int>(0, 4) == 0) {
        const std::size_t per_group = *uniformIn<std::size_t>(4, 9);
        groups = *uniformIn<std::size_t>(1, 4);
        shape = {*uniformIn<std::size_t>(1, 4), per_group * groups, *uniformIn<std::size_t>(4, 8)};
    } else {
        shape = *genShape(2, 4);
        shape[1] = *uniformIn<std::size_t>(1, 7);
        std::vector<std::size_t> divisors;
        for (std::size_t g = 1; g <= shape[1]; ++g) {
            if (shape[1] % g == 0) divisors.push_back(g);
        }
        groups = *rc::gen::elementOf(divisors);
        // torch's error: N·(C/G)·spatial = 1.
        RC_PRE(shape[0] * (shape[1] / groups) * (xgrad::element_count(shape) / (shape[0] * shape[1])) != 1);
    }
    const xgrad::GroupNormOptions options{.affine = *rc::gen::arbitrary<bool>()};
    auto gn = std::make_shared<GroupNorm<double>>(groups, shape[1], options);
    gn->train(*rc::gen::arbitrary<bool>());
    drawParameters(*gn, large);
    const Layout l(shape);
    const std::size_t per_group = l.c / groups;
    return {gn, shape, large, l.n * groups, [l, groups, per_group](std::size_t i) {
                return l.sample(i) * groups + l.channel(i) / per_group;
            },
            [l](std::size_t i) { return l.channel(i); }, std::nullopt};
}

// A LayerNorm input past the caches in T whose rows are cache blocks in the forward and the
// backward, for two threads: the row passes of LayerNorm without elementwise affine stream their
// outputs, and so do the column passes with it (LayerNormShapes).
template <class T>
const Shape streamed_layer_norm_shape = {sizeof(T) == 8 ? 17u : 33u, 131072};

// normalized_shape the last k dims of the input. Large: rows in cache blocks, in parallel; a row
// past the cache block; rows of 4 elements and more than 2^14 of them (the column reduction in
// blocks of rows); rows of one element, which the elementwise passes merge into one run; rows in
// cache blocks of a tensor past the caches (outputs streamed).
Case drawLayerNorm(bool large) {
    Shape shape;
    std::size_t dims = 1;
    // The streamed shape the rarest (a case takes about half a second), and not the one shrunk to.
    if (large && *uniformIn<int>(0, 12) == 11) {
        shape = grown(streamed_layer_norm_shape<double>);
    } else if (large) {
        const std::size_t pick = *uniformIn<std::size_t>(0, 5);
        shape = grown(std::vector<Shape>{{16, 3, 40, 40}, {2, 70000}, {20000, 4}, {64, 32, 32}, {70000, 1}}[pick]);
        dims = std::vector<std::size_t>{3, 1, 1, 2, 1}[pick];
    } else {
        shape = *genShape(1, 4);
        dims = *uniformIn<std::size_t>(1, shape.size() + 1);
    }
    const Shape normalized(shape.end() - static_cast<std::ptrdiff_t>(dims), shape.end());
    const xgrad::LayerNormOptions options{.elementwise_affine = *rc::gen::arbitrary<bool>()};
    auto ln = std::make_shared<LayerNorm<double>>(normalized, options);
    ln->train(*rc::gen::arbitrary<bool>());
    drawParameters(*ln, large);
    const std::size_t m = xgrad::element_count(normalized);
    return {ln, shape, large, xgrad::element_count(shape) / m, [m](std::size_t i) { return i / m; },
            [m](std::size_t i) { return i % m; }, std::nullopt};
}

// InstanceNorm1d or 2d, batched or not, in any mode. Large: instances in cache blocks, in
// parallel; instances past the cache block; few long instances, unbatched.
Case drawInstanceNorm(bool large) {
    Shape shape;
    std::size_t spatial_dims = 1;
    bool batched = true;
    const bool affine = *rc::gen::arbitrary<bool>();
    const bool track = *rc::gen::arbitrary<bool>();
    const bool training = *rc::gen::arbitrary<bool>();
    if (large) {
        const std::size_t pick = *uniformIn<std::size_t>(0, 3);
        shape = grown(std::vector<Shape>{{2, 8, 64, 80}, {1, 2, 300, 300}, {3, 40000}}[pick]);
        spatial_dims = pick < 2 ? 2 : 1;
        batched = pick < 2;
    } else {
        spatial_dims = *uniformIn<std::size_t>(1, 3);
        batched = *rc::gen::arbitrary<bool>();
        shape = *rc::gen::container<Shape>(spatial_dims + (batched ? 2 : 1), genDim());
    }
    const Layout l(shape, batched);
    // An instance of one value is an error where its own statistics are used.
    const bool instance_statistics = training || !track;
    RC_PRE(!instance_statistics || l.s > 1);
    const xgrad::InstanceNormOptions options{.momentum = 0.1, .affine = affine, .track_running_stats = track};
    std::shared_ptr<InstanceNorm<double>> in;
    if (spatial_dims == 1) {
        in = std::make_shared<InstanceNorm1d<double>>(l.c, options);
    } else {
        in = std::make_shared<InstanceNorm2d<double>>(l.c, options);
    }
    in->train(training);
    drawParameters(*in, large);
    const Index channel = [l](std::size_t i) { return l.channel(i); };
    Case out{in, shape, large, l.n * l.c, [l](std::size_t i) { return i / l.s; }, channel, std::nullopt};
    if (track) {
        Array& mean = *buffer(*in, "running_mean").tensor;
        Array& var = *buffer(*in, "running_var").tensor;
        mean = *genArray({l.c}, anywhere(-2, 2));
        var = *genArray({l.c}, anywhere(0.25, 4));
        if (!training) {
            out.groups = l.c;
            out.group = channel;
            out.fixed = Fixed{{mean.begin(), mean.end()}, {var.begin(), var.end()}};
        }
    }
    return out;
}

// Inputs with every group's variance away from 0: distinct values on small shapes, values on a
// fine grid on large ones (groups of several elements).
Array drawInput(const Shape& shape, bool large) {
    return large ? drawValues(shape, anywhere(-4, 4), true) : *genDistinct(shape, 0.25);
}

// ---- the checks every layer goes through ----

void checkAgainstReference(const Case& c) {
    const Array x = drawInput(c.shape, c.large);
    const Array dy = drawValues(c.shape, anywhere(-2, 2), c.large);
    const auto weight = parameter(*c.layer, "weight");
    const auto bias = parameter(*c.layer, "bias");
    const Outputs<double> ref = naiveNormalization(x, dy, weight ? &weight->value() : nullptr,
                                                   bias ? &bias->value() : nullptr, c.groups, c.group, c.param,
                                                   c.fixed ? &*c.fixed : nullptr);
    const Outputs<double> out = run(*c.layer, x, dy);
    const std::string what = c.layer->describe() + " on " + xgrad::shape_str(c.shape) + ": ";
    checkClose(out.y, ref.y, 1e-10, what + "y");
    checkClose(out.dx, ref.dx, 1e-9, what + "dx");
    if (weight) {
        // Sums over many elements: relative to their scale.
        const double scale = std::sqrt(static_cast<double>(x.size()));
        checkClose(Array(out.dweight / scale), Array(ref.dweight / scale), 1e-10, what + "dweight");
        checkClose(Array(out.dbias / scale), Array(ref.dbias / scale), 1e-10, what + "dbias");
    }
}

void checkCaseGradients(const Case& c) {
    Inputs inputs{leaf(drawInput(c.shape, c.large))};
    for (auto& [name, p] : c.layer->named_parameters()) inputs.push_back(p);
    const auto f = [&](const Inputs& in) { return (*c.layer)(in[0]); };
    const std::string what = c.layer->describe() + (c.layer->is_training() ? " training" : " eval");
    if (c.large) {
        checkLargeGradients(f, inputs, *rc::gen::noShrink(rc::gen::arbitrary<std::uint32_t>()), what);
    } else {
        checkGradients(f, inputs, what);
    }
}

// One case in eight is large.
bool drawLargeOrNot() { return *uniformIn(0, 8) == 0; }

// ---- against the naive reference ----

RC_GTEST_PROP(GroupNormReference, ForwardAndGradientsMatchNaiveLoops, ()) {
    checkAgainstReference(drawGroupNorm(drawLargeOrNot()));
}
RC_GTEST_PROP(LayerNormReference, ForwardAndGradientsMatchNaiveLoops, ()) {
    checkAgainstReference(drawLayerNorm(drawLargeOrNot()));
}
RC_GTEST_PROP(InstanceNormReference, ForwardAndGradientsMatchNaiveLoops, ()) {
    checkAgainstReference(drawInstanceNorm(drawLargeOrNot()));
}

// ---- against central differences ----

RC_GTEST_PROP(GroupNormGradients, ThroughTheStatistics, ()) { checkCaseGradients(drawGroupNorm(drawLargeOrNot())); }
RC_GTEST_PROP(LayerNormGradients, ThroughTheStatistics, ()) { checkCaseGradients(drawLayerNorm(drawLargeOrNot())); }
RC_GTEST_PROP(InstanceNormGradients, ThroughInstanceOrRunningStatistics, ()) {
    checkCaseGradients(drawInstanceNorm(drawLargeOrNot()));
}

// ---- identities ----

template <class T>
xt::xarray<T> as(const Array& a) {
    return xt::cast<T>(a);
}

// GroupNorm with one channel per group and InstanceNorm with affine: the same grouping, the same
// stages, so the same bits, in float and in double.
template <class T>
void checkGroupNormIsInstanceNorm(const Shape& shape, bool training, const Array& x, const Array& dy,
                                  const Array& weight, const Array& bias) {
    const std::size_t c = shape[1];
    GroupNorm<T> gn(c, c);
    std::unique_ptr<InstanceNorm<T>> in;
    if (shape.size() == 3) {
        in = std::make_unique<InstanceNorm1d<T>>(c, xgrad::InstanceNormOptions{.affine = true});
    } else {
        in = std::make_unique<InstanceNorm2d<T>>(c, xgrad::InstanceNormOptions{.affine = true});
    }
    for (Module<T>* m : {static_cast<Module<T>*>(&gn), static_cast<Module<T>*>(in.get())}) {
        m->train(training);
        parameter(*m, "weight")->mutable_value() = as<T>(weight);
        parameter(*m, "bias")->mutable_value() = as<T>(bias);
    }
    const Outputs<T> a = run<T>(gn, as<T>(x), as<T>(dy));
    const Outputs<T> b = run<T>(*in, as<T>(x), as<T>(dy));
    RC_ASSERT(a.y == b.y);
    RC_ASSERT(a.dx == b.dx);
    RC_ASSERT(a.dweight == b.dweight);
    RC_ASSERT(a.dbias == b.dbias);
}

RC_GTEST_PROP(NormalizationIdentities, GroupNormWithOneChannelPerGroupIsInstanceNormWithAffine, ()) {
    const bool large = drawLargeOrNot();
    const Shape shape = large ? grown(*rc::gen::element(Shape{2, 8, 64, 80}, Shape{1, 2, 300, 300}))
                              : *rc::gen::suchThat(genShape(3, 4), [](const Shape& s) { return s[2] * s.back() > 1; });
    const Array x = drawInput(shape, large);
    const Array dy = drawValues(shape, anywhere(-2, 2), large);
    const Array weight = *genArray({shape[1]}, anywhere(-2, 2));
    const Array bias = *genArray({shape[1]}, anywhere(-2, 2));
    const bool training = *rc::gen::arbitrary<bool>();
    checkGroupNormIsInstanceNorm<double>(shape, training, x, dy, weight, bias);
    checkGroupNormIsInstanceNorm<float>(shape, training, x, dy, weight, bias);
}

// GroupNorm with one group and LayerNorm over (C, *): the same statistics (the same sums over the
// same (1, N, C·S) view); the output and dx differ by rounding alone, since GroupNorm folds gamma
// into the per-row scale where it walks rows per (n, c) and LayerNorm applies it after; LayerNorm's
// dweight summed over the spatial dims is GroupNorm's.
RC_GTEST_PROP(NormalizationIdentities, GroupNormWithOneGroupNormalizesAsLayerNormOverCHW, ()) {
    const bool large = drawLargeOrNot();
    const Shape shape = large ? grown(*rc::gen::element(Shape{4, 8, 48, 48}, Shape{2, 4, 180, 200})) : *genShape(2, 4);
    RC_PRE(xgrad::element_count(shape) > 1);  // GroupNorm's (torch's) error for a single value
    const std::size_t c = shape[1];
    const Shape normalized(shape.begin() + 1, shape.end());
    const Layout l(shape);
    GroupNorm<double> gn(1, c);
    LayerNorm<double> ln(normalized);
    const Array x = drawInput(shape, large);
    const Array dy = drawValues(shape, anywhere(-2, 2), large);
    const Array weight = *genArray({c}, anywhere(-2, 2));
    const Array bias = *genArray({c}, anywhere(-2, 2));
    parameter(gn, "weight")->mutable_value() = weight;
    parameter(gn, "bias")->mutable_value() = bias;
    Array ln_weight = Array::from_shape(normalized);
    Array ln_bias = Array::from_shape(normalized);
    for (std::size_t j = 0; j < ln_weight.size(); ++j) {
        ln_weight.flat(j) = weight(j / l.s);
        ln_bias.flat(j) = bias(j / l.s);
    }
    parameter(ln, "weight")->mutable_value() = ln_weight;
    parameter(ln, "bias")->mutable_value() = ln_bias;
    const Outputs<double> g = run<double>(gn, x, dy);
    const Outputs<double> n = run<double>(ln, x, dy);
    checkClose(n.y, g.y, 1e-12, "y");
    checkClose(n.dx, g.dx, 1e-10, "dx");
    Array dweight = xt::zeros<double>({c});
    Array dbias = xt::zeros<double>({c});
    for (std::size_t j = 0; j < n.dweight.size(); ++j) {
        dweight(j / l.s) += n.dweight.flat(j);
        dbias(j / l.s) += n.dbias.flat(j);
    }
    const double scale = std::sqrt(static_cast<double>(x.size()));
    checkClose(Array(dweight / scale), Array(g.dweight / scale), 1e-12, "dweight");
    checkClose(Array(dbias / scale), Array(g.dbias / scale), 1e-12, "dbias");
}

// ---- the same bits with one and two threads ----

template <class T>
struct ThreadCase {
    std::string what;
    std::function<std::unique_ptr<Module<T>>()> make;
    Shape shape;
};

template <class T>
std::vector<ThreadCase<T>> threadCases() {
    using xgrad::InstanceNormOptions;
    const auto instance = [](std::size_t c, bool track) {
        const InstanceNormOptions options{.affine = true, .track_running_stats = track};
        return std::make_unique<InstanceNorm2d<T>>(c, options);
    };
    return {
        {"GroupNorm(4, 8), groups in cache blocks", [] { return std::make_unique<GroupNorm<T>>(4, 8); },
         {4, 8, 48, 48}},
        {"GroupNorm(2, 4), groups past the cache block", [] { return std::make_unique<GroupNorm<T>>(2, 4); },
         {2, 4, 180, 200}},
        {"GroupNorm(3, 12), groups of 4", [] { return std::make_unique<GroupNorm<T>>(3, 12); }, {12000, 12}},
        {"GroupNorm(2, 64), rows per group", [] { return std::make_unique<GroupNorm<T>>(2, 64); }, {3000, 64}},
        {"LayerNorm over (3, 40, 40)", [] { return std::make_unique<LayerNorm<T>>(Shape{3, 40, 40}); },
         {16, 3, 40, 40}},
        {"LayerNorm, rows past the cache block", [] { return std::make_unique<LayerNorm<T>>(Shape{70000}); },
         {2, 70000}},
        {"LayerNorm, 20000 rows of 4", [] { return std::make_unique<LayerNorm<T>>(Shape{4}); }, {20000, 4}},
        {"LayerNorm, outputs streamed", [] { return std::make_unique<LayerNorm<T>>(Shape{131072}); },
         streamed_layer_norm_shape<T>},
        {"InstanceNorm2d, instances in cache blocks", [=] { return instance(8, true); }, {2, 8, 64, 80}},
        {"InstanceNorm2d, instances past the cache block", [=] { return instance(2, false); }, {1, 2, 300, 300}},
    };
}

// Training, then eval (InstanceNorm with running statistics: per channel), from two fresh layers
// with the same parameters, one run with one thread and one with two.
template <class T>
void checkThreadCountIndependence() {
    std::mt19937 rng(17);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (const ThreadCase<T>& tc : threadCases<T>()) {
        SCOPED_TRACE(tc.what);
        xt::xarray<T> x = xt::xarray<T>::from_shape(tc.shape);
        xt::xarray<T> dy = xt::xarray<T>::from_shape(tc.shape);
        for (auto& v : x) v = static_cast<T>(2.0 + 3.0 * normal(rng));
        for (auto& v : dy) v = static_cast<T>(normal(rng));
        std::vector<xt::xarray<T>> runs[2];
        for (int threads = 1; threads <= 2; ++threads) {
            const auto layer = tc.make();
            std::mt19937 prng(5);
            for (auto& [name, p] : layer->named_parameters()) {
                for (auto& v : p.mutable_value()) v = static_cast<T>(1.0 + 0.5 * normal(prng));
            }
            tbb::task_arena(threads).execute([&] {
                const Outputs<T> train = run<T>(*layer, x, dy);
                layer->eval();
                const Outputs<T> eval = run<T>(*layer, x, dy);
                runs[threads - 1] = {train.y, train.dx, train.dweight, train.dbias,
                                     eval.y,  eval.dx,  eval.dweight,  eval.dbias};
                for (auto& [name, b] : layer->named_buffers()) {
                    if (b.tensor) runs[threads - 1].push_back(*b.tensor);
                }
            });
        }
        const char* what[] = {"y", "dx", "dweight", "dbias", "eval y", "eval dx", "eval dweight", "eval dbias",
                              "running_mean", "running_var"};
        ASSERT_EQ(runs[0].size(), runs[1].size());
        for (std::size_t k = 0; k < runs[0].size(); ++k) {
            EXPECT_TRUE(runs[0][k] == runs[1][k]) << what[k] << ": one and two threads differ";
            EXPECT_TRUE(xt::all(xt::isfinite(runs[0][k]))) << what[k];
        }
    }
}

TEST(NormalizationFamilyThreads, DoubleBitsDoNotDependOnTheThreadCount) { checkThreadCountIndependence<double>(); }
TEST(NormalizationFamilyThreads, FloatBitsDoNotDependOnTheThreadCount) { checkThreadCountIndependence<float>(); }

// ---- InstanceNorm's running statistics ----

// torch's rule: the mean over the samples of the instances' means and unbiased variances, moved by
// the momentum; num_batches_tracked stays 0 as in torch 1.13.
RC_GTEST_PROP(InstanceNormRunningStats, MoveByTheMeanOverSamplesOfTheInstanceStatistics, ()) {
    const Shape shape = *rc::gen::suchThat(genShape(3, 3), [](const Shape& s) { return s[2] > 1; });
    const double momentum = *rc::gen::element(0.1, 0.5, 1.0);
    InstanceNorm1d<double> in(shape[1], {.momentum = momentum, .track_running_stats = true});
    const Layout l(shape);
    std::vector<double> mean(l.c, 0.0), var(l.c, 1.0);
    const int steps = *uniformIn(1, 4);
    for (int step = 0; step < steps; ++step) {
        const Array x = *genDistinct(shape, 0.25);
        in(Var<double>(x));
        for (std::size_t c = 0; c < l.c; ++c) {
            double batch_mean = 0.0, batch_var = 0.0;
            for (std::size_t n = 0; n < l.n; ++n) {
                const auto instance = xt::view(x, n, c);
                const double m = xt::mean(instance)();
                batch_mean += m;
                batch_var += xt::sum((instance - m) * (instance - m))() / static_cast<double>(l.s - 1);
            }
            mean[c] = (1 - momentum) * mean[c] + momentum * batch_mean / static_cast<double>(l.n);
            var[c] = (1 - momentum) * var[c] + momentum * batch_var / static_cast<double>(l.n);
        }
    }
    EXPECT_EQ(closeMismatch(*in.running_mean(), xt::adapt(mean), 1e-12, "running_mean"), "");
    EXPECT_EQ(closeMismatch(*in.running_var(), xt::adapt(var), 1e-12, "running_var"), "");
    RC_ASSERT(*in.num_batches_tracked() == 0);
    // Eval reads them and moves nothing.
    in.eval();
    in(Var<double>(*genDistinct(shape, 0.25)));
    EXPECT_EQ(closeMismatch(*in.running_mean(), xt::adapt(mean), 1e-12, "running_mean after eval"), "");
}

// ---- torch's reprs and state ----

// 0, 1, 2, ... in `shape`.
template <class T>
xt::xarray<T> ramp(const Shape& shape) {
    xt::xarray<T> a = xt::xarray<T>::from_shape(shape);
    for (std::size_t i = 0; i < a.size(); ++i) a.flat(i) = static_cast<T>(i);
    return a;
}

TEST(NormalizationFamilyState, ReprsAreTorchs) {
    EXPECT_EQ(GroupNorm<float>(3, 6).describe(), "GroupNorm(3, 6, eps=1e-05, affine=True)");
    EXPECT_EQ(GroupNorm<float>(2, 4, {.eps = 1e-3, .affine = false}).describe(),
              "GroupNorm(2, 4, eps=0.001, affine=False)");
    EXPECT_EQ(LayerNorm<float>({7}).describe(), "LayerNorm((7,), eps=1e-05, elementwise_affine=True)");
    EXPECT_EQ(LayerNorm<float>({4, 5, 6}, {.elementwise_affine = false}).describe(),
              "LayerNorm((4, 5, 6), eps=1e-05, elementwise_affine=False)");
    EXPECT_EQ(InstanceNorm1d<float>(4).describe(),
              "InstanceNorm1d(4, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)");
    EXPECT_EQ(InstanceNorm2d<float>(4, {.momentum = 0.2, .affine = true, .track_running_stats = true}).describe(),
              "InstanceNorm2d(4, eps=1e-05, momentum=0.2, affine=True, track_running_stats=True)");
}

TEST(NormalizationFamilyState, NamesShapesAndInitialValuesAreTorchs) {
    using Strings = std::vector<std::string>;
    GroupNorm<float> gn(2, 6);
    EXPECT_EQ(stateNames(gn), (Strings{"weight", "bias"}));
    EXPECT_EQ(gn.weight()->value(), xt::xarray<float>(xt::ones<float>({6})));
    EXPECT_EQ(gn.bias()->value(), xt::xarray<float>(xt::zeros<float>({6})));
    EXPECT_TRUE(stateNames(GroupNorm<float>(2, 6, {.affine = false})).empty());

    LayerNorm<float> ln({4, 5});
    EXPECT_EQ(stateNames(ln), (Strings{"weight", "bias"}));
    EXPECT_EQ(ln.weight()->value(), xt::xarray<float>(xt::ones<float>({4, 5})));
    EXPECT_EQ(ln.bias()->value(), xt::xarray<float>(xt::zeros<float>({4, 5})));
    EXPECT_TRUE(stateNames(LayerNorm<float>({4}, {.elementwise_affine = false})).empty());

    EXPECT_TRUE(stateNames(InstanceNorm1d<float>(3)).empty());
    InstanceNorm2d<float> in(3, {.affine = true, .track_running_stats = true});
    EXPECT_EQ(stateNames(in), (Strings{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
    EXPECT_EQ(*in.running_mean(), xt::xarray<float>(xt::zeros<float>({3})));
    EXPECT_EQ(*in.running_var(), xt::xarray<float>(xt::ones<float>({3})));
    EXPECT_EQ(*buffer<float>(in, "num_batches_tracked").counter, 0);
    in(Var<float>(ramp<float>({2, 3, 2, 2})));
    EXPECT_EQ(*in.num_batches_tracked(), 0) << "torch 1.13 does not count InstanceNorm's batches";
    EXPECT_EQ(stateNames(InstanceNorm1d<float>(3, {.track_running_stats = true})),
              (Strings{"running_mean", "running_var", "num_batches_tracked"}));
}

// An unbatched input is a batch of one, as in torch.
TEST(NormalizationFamilyState, InstanceNormTakesUnbatchedInput) {
    InstanceNorm2d<double> in(3, {.affine = true});
    parameter(in, "weight")->mutable_value() = Array{0.5, 2.0, -1.0};
    const Array x = ramp<double>({3, 3, 4}) * ramp<double>({3, 3, 4});
    Array batched_x = x;
    batched_x.reshape({1, 3, 3, 4});
    Array batched = in(Var<double>(batched_x)).value();
    const Array unbatched = in(Var<double>(x)).value();
    EXPECT_EQ(xgrad::to_shape(unbatched.shape()), (Shape{3, 3, 4}));
    batched.reshape({3, 3, 4});
    EXPECT_TRUE(batched == unbatched);
}

// ---- errors ----

// A model holding the layer as "norm", so that where() names a path.
template <class L>
struct Holder : Module<float> {
    std::shared_ptr<L> norm;
    explicit Holder(std::shared_ptr<L> m) : norm(this->register_module("norm", std::move(m))) {}
    Var<float> forward(const Var<float>& x) override { return (*norm)(x); }
    std::string describe() const override { return "Holder"; }
};

Var<float> input(const Shape& shape) { return Var<float>(xt::xarray<float>(xt::ones<float>(shape))); }

TEST(NormalizationFamilyErrors, GroupNorm) {
    EXPECT_EQ(error_of<std::invalid_argument>([] { GroupNorm<float>(3, 4); }),
              "GroupNorm(3, 4, eps=1e-05, affine=True): num_channels must be divisible by num_groups, got 4 channels "
              "and 3 groups");
    EXPECT_NE(error_of<std::invalid_argument>([] { GroupNorm<float>(0, 4); }).find("got 4 channels and 0 groups"),
              std::string::npos);
    Holder<GroupNorm<float>> model(std::make_shared<GroupNorm<float>>(2, 4));
    const std::string where = "norm (GroupNorm(2, 4, eps=1e-05, affine=True))";
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({2, 5, 3})); }), where + ": expected input (N, 4, *), got (2, 5, 3)");
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({4})); }), where + ": expected input (N, 4, *), got (4)");
    GroupNorm<float> per_channel(2, 2);
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { per_channel(input({1, 2})); }),
              per_channel.describe() + ": Expected more than 1 value per channel when training, got input (1, 2)");
    EXPECT_NO_THROW(per_channel(input({3, 2})));  // torch accepts one value per group when N > 1
    parameter<float>(*model.norm, "weight")->mutable_value() = xt::ones<float>({3});
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({2, 4, 3})); }), where + ": weight has shape (3), expected (4)");
    // Groups of no element (H·W = 0): an empty output, nothing read.
    GroupNorm<float> empty_groups(2, 4);
    EXPECT_EQ(empty_groups(input({2, 4, 0})).shape(), (Shape{2, 4, 0}));
    // No sample, groups of 6 elements: no group, nothing read (nor an address formed past the
    // empty input's: the sanitizer job checks that).
    EXPECT_EQ(empty_groups(input({0, 4, 3})).shape(), (Shape{0, 4, 3}));
    // The same with rows per group (group_norm_kernel.hpp).
    GroupNorm<float> short_rows(2, 32);
    EXPECT_EQ(short_rows(input({0, 32})).shape(), (Shape{0, 32}));
}

// The walk each of the shapes above takes, so that a change of group_norm_rows_per_group's rule
// cannot silently leave either walk untested: per (n, c) in the goldens group_norm_g3_c6 and
// group_norm_g4_c4, the large shapes (4, 8, 48, 48) and (12000, 12); per group in the goldens
// group_norm_g1_c4, group_norm_g2_c32_nc and group_norm_g2_c6_short, the large (3000, 64).
TEST(GroupNormWalks, TheTestedShapesReachBothWalks) {
    using xgrad::group_norm_rows_per_group;
    EXPECT_FALSE(group_norm_rows_per_group({3, 6, 20}, 3));
    EXPECT_FALSE(group_norm_rows_per_group({2, 4, 15}, 4));
    EXPECT_TRUE(group_norm_rows_per_group({2, 4, 15}, 1));
    EXPECT_FALSE(group_norm_rows_per_group({4, 8, 48 * 48}, 4));
    EXPECT_FALSE(group_norm_rows_per_group({12000, 12, 1}, 3));
    EXPECT_TRUE(group_norm_rows_per_group({5, 32, 1}, 2));
    EXPECT_TRUE(group_norm_rows_per_group({3, 6, 7}, 2));
    EXPECT_TRUE(group_norm_rows_per_group({3000, 64, 1}, 2));
    EXPECT_TRUE(group_norm_rows_per_group({0, 32, 1}, 2));
}

// streamed_layer_norm_shape is past the caches, and its rows (samples) are cache blocks in the
// forward (x and y) and in the backward without elementwise affine (dy, x and dx), enough of them
// for two threads; a change of the thresholds would otherwise stop checking the streamed passes
// unseen. (With it, layer_norm_backward streams dx over any tensor past the caches.)
template <class T>
void checkStreamedLayerNormShape() {
    const Shape& shape = streamed_layer_norm_shape<T>;
    expectStreamedWalk<T>(xgrad::Grouping::per_row(shape[0], shape[1]));
}
TEST(LayerNormShapes, DoubleTestShapeIsStreamed) { checkStreamedLayerNormShape<double>(); }
TEST(LayerNormShapes, FloatTestShapeIsStreamed) { checkStreamedLayerNormShape<float>(); }

// The streamed passes against the naive loops every run, with two threads whatever the host has
// (the properties draw that shape rarely, and with more threads a host would walk it whole): the
// row passes without elementwise affine, the column passes with it.
TEST(LayerNormShapes, StreamedPassesMatchNaiveLoops) {
    const Shape& shape = streamed_layer_norm_shape<double>;
    for (const bool elementwise_affine : {false, true}) {
        SCOPED_TRACE(elementwise_affine ? "elementwise affine" : "no elementwise affine");
        LayerNorm<double> layer(Shape{shape[1]}, {.elementwise_affine = elementwise_affine});
        std::mt19937 rng(23);
        std::normal_distribution<double> normal(0.0, 1.0);
        for (auto& [name, p] : layer.named_parameters()) {
            for (auto& v : p.mutable_value()) v = 1.0 + 0.5 * normal(rng);
        }
        Array x = Array::from_shape(shape), dy = Array::from_shape(shape);
        for (auto& v : x) v = 2.0 + 3.0 * normal(rng);
        for (auto& v : dy) v = normal(rng);
        Outputs<double> out;
        tbb::task_arena(2).execute([&] { out = run<double>(layer, x, dy); });
        const std::size_t m = shape[1];
        const Array* weight = elementwise_affine ? &layer.weight()->value() : nullptr;
        const Array* bias = elementwise_affine ? &layer.bias()->value() : nullptr;
        const Outputs<double> ref = naiveNormalization(x, dy, weight, bias, shape[0],
                                                       [m](std::size_t i) { return i / m; },
                                                       [m](std::size_t i) { return i % m; });
        EXPECT_EQ(closeMismatch(out.y, ref.y, 1e-10, "y"), "");
        EXPECT_EQ(closeMismatch(out.dx, ref.dx, 1e-9, "dx"), "");
        if (!elementwise_affine) continue;
        const double scale = std::sqrt(static_cast<double>(x.size()));
        EXPECT_EQ(closeMismatch(Array(out.dweight / scale), Array(ref.dweight / scale), 1e-10, "dweight"), "");
        EXPECT_EQ(closeMismatch(Array(out.dbias / scale), Array(ref.dbias / scale), 1e-10, "dbias"), "");
    }
}

// layer_norm_forward and layer_norm_backward (their passes over column blocks) against the row by
// row passes they replace (normalize_batch; normalize_backward for dx and elementwise_affine_backward
// for the parameters): the statistics, y and dx bit for bit, the parameters' gradients to a few
// roundings of T and the same bits at one and two threads, for every choice of the gradients
// wanted. Rows fewer than a sweep's and an odd last one; one column block and several with a short
// last one; tasks split at two threads; rows too long for the cache-blocked walk (the forward's
// column pass over all rows); many short rows (the row passes themselves); outputs streamed.
template <class T>
void checkLayerNormColumnPasses() {
    using xgrad::NormalizeGrads;
    const std::vector<Shape> shapes = {
        {3, 37}, {6, 1000}, {7, 5000}, {16, 4800}, {5, 70001}, {6, 140000}, {20000, 4}, streamed_layer_norm_shape<T>};
    struct Wanted {
        bool dx, dgamma, dbeta;
    };
    const Wanted wanted[] = {{true, true, true}, {false, true, true}, {true, false, true}, {true, true, false},
                             {true, false, false}};
    std::mt19937 rng(31);
    std::normal_distribution<double> normal(0.0, 1.0);
    const auto as_array = [](const std::vector<T>& v) {
        Array a = Array::from_shape({v.size()});
        std::copy(v.begin(), v.end(), a.begin());
        return a;
    };
    for (const auto& shape : shapes) {
        const std::size_t rows = shape[0], columns = shape[1], n = rows * columns;
        SCOPED_TRACE(xgrad::shape_str(shape));
        std::vector<T> x(n), dy(n), gamma(columns), beta(columns);
        for (auto& v : x) v = static_cast<T>(1e3 + 3.0 * normal(rng));  // a large mean: the centring counts
        for (auto& v : dy) v = static_cast<T>(normal(rng));
        for (auto& v : gamma) v = static_cast<T>(1.0 + 0.5 * normal(rng));
        for (auto& v : beta) v = static_cast<T>(normal(rng));
        const xgrad::Grouping grouping = xgrad::Grouping::per_row(rows, columns);
        const xgrad::ElementwiseAffineEpilogue<T> affine(gamma.data(), beta.data(), columns);
        std::vector<T> y_apart(n);
        const xgrad::NormalizedBatch batch =
            xgrad::normalize_batch(grouping, x.data(), xgrad::NormalizeOptions<T>{}, affine, y_apart.data());
        std::vector<T> dx_apart(n), dgamma_apart(columns), dbeta_apart(columns);
        xgrad::normalize_backward<T>(grouping, batch, xgrad::GradientThrough::batch(), dy.data(), x.data(), nullptr,
                                     nullptr, affine, NormalizeGrads<T>{dx_apart.data(), nullptr, nullptr});
        xgrad::elementwise_affine_backward(xgrad::ChannelShape{rows, columns, 1}, 1, batch.norm, dy.data(), x.data(),
                                           dgamma_apart.data(), dbeta_apart.data());
        // A column's sum over the rows against its size: terms of about 1, rows of them.
        const double tolerance = 64 * std::numeric_limits<T>::epsilon() * std::sqrt(static_cast<double>(rows));
        for (const Wanted& w : wanted) {
            SCOPED_TRACE(std::string("dx ") + (w.dx ? "wanted" : "not") + ", dgamma " + (w.dgamma ? "wanted" : "not") +
                         ", dbeta " + (w.dbeta ? "wanted" : "not"));
            std::vector<T> by_threads[2][3];
            for (int threads = 1; threads <= 2; ++threads) {
                SCOPED_TRACE(std::to_string(threads) + " threads");
                const T sentinel = T(-7);  // what a gradient not wanted must still hold
                std::vector<T> y(n), dx(n, sentinel), dgamma(columns, sentinel), dbeta(columns, sentinel);
                const bool forward = &w == &wanted[0];  // the forward once a shape and thread count
                tbb::task_arena(threads).execute([&] {
                    if (forward) {
                        const xgrad::NormalizedBatch own =
                            xgrad::layer_norm_forward(rows, columns, x.data(), affine, 1e-5, y.data());
                        EXPECT_TRUE(own.norm.mean == batch.norm.mean && own.norm.invstd == batch.norm.invstd)
                            << "the statistics differ from normalize_batch's";
                        EXPECT_TRUE(y == y_apart) << "y differs from normalize_batch's";
                    }
                    xgrad::layer_norm_backward(rows, columns, batch, dy.data(), x.data(), affine,
                                               NormalizeGrads<T>{w.dx ? dx.data() : nullptr,
                                                                 w.dgamma ? dgamma.data() : nullptr,
                                                                 w.dbeta ? dbeta.data() : nullptr});
                });
                EXPECT_TRUE(w.dx ? dx == dx_apart : dx == std::vector<T>(n, sentinel)) << "dx";
                if (w.dgamma) {
                    EXPECT_EQ(closeMismatch(as_array(dgamma), as_array(dgamma_apart), tolerance, "dgamma"), "");
                } else {
                    EXPECT_TRUE(dgamma == std::vector<T>(columns, sentinel)) << "dgamma written though not wanted";
                }
                if (w.dbeta) {
                    EXPECT_EQ(closeMismatch(as_array(dbeta), as_array(dbeta_apart), tolerance, "dbeta"), "");
                } else {
                    EXPECT_TRUE(dbeta == std::vector<T>(columns, sentinel)) << "dbeta written though not wanted";
                }
                by_threads[threads - 1][0] = std::move(dx);
                by_threads[threads - 1][1] = std::move(dgamma);
                by_threads[threads - 1][2] = std::move(dbeta);
            }
            const char* names[] = {"dx", "dgamma", "dbeta"};
            for (int k = 0; k < 3; ++k) {
                EXPECT_TRUE(by_threads[0][k] == by_threads[1][k])
                    << names[k] << ": one and two threads differ";
            }
        }
    }
}
TEST(LayerNormKernels, ColumnPassesMatchTheRowPassesDouble) { checkLayerNormColumnPasses<double>(); }
TEST(LayerNormKernels, ColumnPassesMatchTheRowPassesFloat) { checkLayerNormColumnPasses<float>(); }

TEST(NormalizationFamilyErrors, LayerNorm) {
    EXPECT_NE(error_of<std::invalid_argument>([] { LayerNorm<float>(Shape{}); })
                  .find("expected normalized_shape to be at least 1-dimensional, got ()"),
              std::string::npos);
    Holder<LayerNorm<float>> model(std::make_shared<LayerNorm<float>>(Shape{4, 5}));
    const std::string where = "norm (LayerNorm((4, 5), eps=1e-05, elementwise_affine=True))";
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({3, 5, 4})); }), where + ": expected input (*, 4, 5), got (3, 5, 4)");
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({5})); }), where + ": expected input (*, 4, 5), got (5)");
    EXPECT_NO_THROW(model(input({4, 5})));  // no leading dims: one row
    EXPECT_EQ(model(input({0, 4, 5})).shape(), (Shape{0, 4, 5}));  // no row: nothing read
    // Rows of no element, with weight and bias of none: an empty output and empty gradients.
    LayerNorm<float> empty_rows(Shape{0});
    Var<float> x(xt::xarray<float>(xt::ones<float>({3, 0})), true);
    const Var<float> y = empty_rows(x);
    EXPECT_EQ(y.shape(), (Shape{3, 0}));
    y.backward(xt::xarray<float>(xt::ones<float>({3, 0})));
    EXPECT_EQ(x.grad().shape(), (Shape{3, 0}));
    parameter<float>(*model.norm, "bias")->mutable_value() = xt::zeros<float>({5, 4});
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({2, 4, 5})); }), where + ": bias has shape (5, 4), expected (4, 5)");
}

TEST(NormalizationFamilyErrors, InstanceNorm) {
    EXPECT_NE(error_of<std::invalid_argument>([] { InstanceNorm1d<float>(4, {.momentum = std::nullopt}); })
                  .find("InstanceNorm1d(4, eps=1e-05, momentum=None, affine=False, track_running_stats=False): "
                        "momentum=None (a cumulative average) is not supported"),
              std::string::npos);
    EXPECT_THROW(InstanceNorm2d<float>(0), std::invalid_argument);
    const xgrad::InstanceNormOptions tracked{.track_running_stats = true};
    Holder<InstanceNorm1d<float>> model(std::make_shared<InstanceNorm1d<float>>(4, tracked));
    const std::string where =
        "norm (InstanceNorm1d(4, eps=1e-05, momentum=0.1, affine=False, track_running_stats=True))";
    const std::string expected = where + ": expected input (N, 4, L) or (4, L), got ";
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({2, 4, 3, 3})); }), expected + "(2, 4, 3, 3)");
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({3, 5, 6})); }), expected + "(3, 5, 6)");
    // (3, 4) is an unbatched (C, L) = (3, 4), as in torch.
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({3, 4})); }), expected + "(3, 4)");
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({3, 4, 1})); }),
              where + ": Expected more than 1 spatial element when training, got input (3, 4, 1)");
    EXPECT_EQ(*model.norm->running_mean(), xt::xarray<float>(xt::zeros<float>({4})))
        << "a rejected batch moves nothing";
    model.eval();
    EXPECT_NO_THROW(model(input({3, 4, 1})));  // eval with running statistics
    InstanceNorm2d<float> untracked(4);
    untracked.eval();
    EXPECT_NE(error_of<xgrad::ShapeError>([&] { untracked(input({2, 4, 1, 1})); }).find("Expected more than 1 spatial element"),
              std::string::npos);
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { untracked(input({2, 4, 3})); }),
              untracked.describe() + ": expected input (N, 4, H, W) or (4, H, W), got (2, 4, 3)");
    model.norm->train();
    buffer<float>(*model.norm, "running_var").tensor->resize({2});
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(input({3, 4, 5})); }), where + ": running_var has shape (2), expected (4)");
}

}  // namespace
