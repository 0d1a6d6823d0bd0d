// What the test files share: rapidcheck generators of shapes (ranks 1 to 4, dims 1 to 4, never
// empty), of broadcast-compatible and incompatible shapes, and of arrays whose values stay on a
// chosen domain (away from the points where an op is not differentiable); plus the checks the
// properties repeat: the gradcheck bound and closeness of two arrays.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <rapidcheck.h>
#include <xtensor/xarray.hpp>
#include <xtensor/xio.hpp>

#include "autodiff/autodiff.hpp"

namespace xgrad_test {

using xgrad::Shape;
using xgrad::Var;
using Array = xt::xarray<double>;

inline constexpr std::size_t max_rank = 4;
inline constexpr std::size_t max_dim = 4;
// Values are drawn on a grid of this step: a power of two, so sums and products of a few of
// them are exact and two evaluation orders of one formula give bitwise-equal results.
inline constexpr double grid = 1.0 / 256.0;
// The bound every gradient must meet against central differences.
inline constexpr double gradcheck_tolerance = 1e-6;

// An integer uniform in [min, max), whatever the run's size (rapidcheck's inRange alone draws
// from a range scaled down by the size, which starts at 0); shrinks towards min.
template <class T>
rc::Gen<T> uniformIn(T min, T max) {
    return rc::gen::resize(rc::kNominalSize, rc::gen::inRange<T>(min, max));
}

inline rc::Gen<std::size_t> genDim() { return uniformIn<std::size_t>(1, max_dim + 1); }

inline rc::Gen<Shape> genShape(std::size_t min_rank = 1, std::size_t max_rank_ = max_rank) {
    return rc::gen::mapcat(uniformIn<std::size_t>(min_rank, max_rank_ + 1),
                           [](std::size_t rank) { return rc::gen::container<Shape>(rank, genDim()); });
}

// numpy's broadcast of two shapes, written independently of the library's.
inline Shape broadcastShape(const Shape& a, const Shape& b) {
    const std::size_t rank = std::max(a.size(), b.size());
    Shape out(rank, 1);
    for (std::size_t i = 0; i < rank; ++i) {
        const std::size_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
        const std::size_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// `count` shapes that broadcast together: one of them equal to a common shape, or each a
// suffix of the common shape (a lower rank) with some dims replaced by 1.
inline rc::Gen<std::vector<Shape>> genBroadcastShapes(std::size_t count) {
    return rc::gen::exec([count] {
        const Shape full = *genShape();
        std::vector<Shape> shapes;
        if (*uniformIn(0, 4) == 0) return std::vector<Shape>(count, full);
        for (std::size_t k = 0; k < count; ++k) {
            const std::size_t rank = *uniformIn<std::size_t>(1, full.size() + 1);
            Shape s(full.end() - static_cast<std::ptrdiff_t>(rank), full.end());
            for (auto& d : s) {
                if (*uniformIn(0, 3) == 0) d = 1;
            }
            shapes.push_back(std::move(s));
        }
        return shapes;
    });
}

// Two shapes that do not broadcast: at one aligned position both dims are > 1 and differ.
inline rc::Gen<std::pair<Shape, Shape>> genIncompatibleShapes() {
    return rc::gen::exec([] {
        auto [a, b] = *rc::gen::pair(genShape(), genShape());
        const std::size_t common = std::min(a.size(), b.size());
        const std::size_t back = *uniformIn<std::size_t>(1, common + 1);
        const std::size_t da = *uniformIn<std::size_t>(2, max_dim + 1);
        std::size_t db = *uniformIn<std::size_t>(2, max_dim);
        if (db >= da) ++db;  // any dim in [2, max_dim] but da
        a[a.size() - back] = da;
        b[b.size() - back] = db;
        return std::make_pair(a, b);
    });
}

// Where the values of a generated array lie: [lo, hi], and also [-hi, -lo] if both_signs.
struct Domain {
    double lo;
    double hi;
    bool both_signs = false;
};
inline Domain anywhere(double lo, double hi) { return {lo, hi, false}; }
inline Domain awayFromZero(double min_abs, double max_abs) { return {min_abs, max_abs, true}; }

inline Array fromVector(const Shape& shape, const std::vector<double>& values) {
    Array a = Array::from_shape(shape);
    std::copy(values.begin(), values.end(), a.begin());
    return a;
}

// Values on `domain` are domain.lo + k * grid for k in [0, steps], and their negatives
// (k in [-steps - 1, -1]) if both_signs.
inline int gridSteps(const Domain& domain) { return static_cast<int>(std::floor((domain.hi - domain.lo) / grid)); }
inline int gridLowest(const Domain& domain) { return domain.both_signs ? -gridSteps(domain) - 1 : 0; }
inline double gridValue(const Domain& domain, int k) {
    return k >= 0 ? domain.lo + k * grid : -(domain.lo + (-k - 1) * grid);
}

// An array of `shape` with values on `domain`, on the grid (shrinks towards domain.lo).
inline rc::Gen<Array> genArray(const Shape& shape, Domain domain) {
    const std::size_t n = xgrad::element_count(shape);
    return rc::gen::map(rc::gen::container<std::vector<int>>(n, uniformIn(gridLowest(domain), gridSteps(domain) + 1)),
                        [shape, domain](const std::vector<int>& ks) {
                            std::vector<double> v(ks.size());
                            for (std::size_t i = 0; i < ks.size(); ++i) v[i] = gridValue(domain, ks[i]);
                            return fromVector(shape, v);
                        });
}

// Like genArray, for arrays too large to draw and shrink element by element: the values come
// from one drawn seed.
inline rc::Gen<Array> genBulkArray(const Shape& shape, Domain domain) {
    return rc::gen::map(rc::gen::arbitrary<std::uint32_t>(), [shape, domain](std::uint32_t seed) {
        std::mt19937 rng(seed);
        std::uniform_int_distribution<int> k(gridLowest(domain), gridSteps(domain));
        Array a = Array::from_shape(shape);
        for (auto& v : a) v = gridValue(domain, k(rng));
        return a;
    });
}

// A random permutation of 0..n-1 (ordering random keys, ties broken by position).
inline rc::Gen<std::vector<std::size_t>> genPermutation(std::size_t n) {
    return rc::gen::map(rc::gen::container<std::vector<int>>(n, uniformIn(0, 1 << 20)),
                        [](const std::vector<int>& keys) {
                            std::vector<std::size_t> order(keys.size());
                            std::iota(order.begin(), order.end(), std::size_t{0});
                            std::stable_sort(order.begin(), order.end(),
                                             [&](std::size_t i, std::size_t j) { return keys[i] < keys[j]; });
                            return order;
                        });
}

// An array whose values are pairwise distinct, any two at least `margin` apart, centred on 0.
inline rc::Gen<Array> genDistinct(const Shape& shape, double margin) {
    const std::size_t n = xgrad::element_count(shape);
    return rc::gen::map(genPermutation(n), [shape, margin, n](const std::vector<std::size_t>& rank) {
        std::vector<double> v(n);
        for (std::size_t i = 0; i < n; ++i) v[i] = (static_cast<double>(rank[i]) - 0.5 * static_cast<double>(n)) * margin;
        return fromVector(shape, v);
    });
}

// A non-empty set of distinct axes of a rank-`rank` array, in random order, each written
// either as i or as i - rank (negative, counted from the end).
inline rc::Gen<xgrad::Axes> genAxes(std::size_t rank) {
    return rc::gen::exec([rank] {
        const auto order = *genPermutation(rank);
        const std::size_t count = *uniformIn<std::size_t>(1, rank + 1);
        xgrad::Axes axes;
        for (std::size_t i = 0; i < count; ++i) {
            const auto axis = static_cast<std::ptrdiff_t>(order[i]);
            axes.push_back(*rc::gen::arbitrary<bool>() ? axis - static_cast<std::ptrdiff_t>(rank) : axis);
        }
        return axes;
    });
}

// One axis of a rank-`rank` array, as i or i - rank.
inline rc::Gen<std::ptrdiff_t> genAxis(std::size_t rank) {
    const auto r = static_cast<std::ptrdiff_t>(rank);
    return uniformIn<std::ptrdiff_t>(-r, r);
}

inline Var<double> leaf(Array value) { return Var<double>(std::move(value), true); }

// Fails the property unless every input's worst relative error against central differences
// is within the bound.
inline void checkGradients(const std::function<Var<double>(const std::vector<Var<double>>&)>& f,
                           const std::vector<Var<double>>& inputs, const std::string& what = "gradcheck",
                           double tolerance = gradcheck_tolerance) {
    const auto results = xgrad::gradcheck(f, inputs);
    for (std::size_t k = 0; k < results.size(); ++k) {
        const auto& r = results[k];
        if (!(r.worst_error <= tolerance)) {
            std::ostringstream msg;
            msg << what << ": input " << k << " of shape " << xgrad::shape_str(inputs[k].shape())
                << ": worst error " << r.worst_error << " at flat index " << r.worst_index << " (analytic "
                << r.analytic << ", numeric " << r.numeric << ")";
            RC_FAIL(msg.str());
        }
    }
}

// Where `actual` differs from `expected`: a different shape, or the first element farther than
// tolerance * max(1, |expected|) from it; "" where it does not.
inline std::string closeMismatch(const Array& actual, const Array& expected, double tolerance, const std::string& what) {
    if (xgrad::to_shape(actual.shape()) != xgrad::to_shape(expected.shape())) {
        return what + ": shape " + xgrad::shape_str(actual.shape()) + ", expected " + xgrad::shape_str(expected.shape());
    }
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const double a = actual.data()[i];
        const double e = expected.data()[i];
        if (!(std::abs(a - e) <= tolerance * std::max(1.0, std::abs(e)))) {
            std::ostringstream msg;
            msg.precision(17);
            msg << what << ": element " << i << " is " << a << ", expected " << e;
            return msg.str();
        }
    }
    return "";
}

// Fails the property where closeMismatch finds a difference.
inline void checkClose(const Array& actual, const Array& expected, double tolerance, const std::string& what) {
    const std::string mismatch = closeMismatch(actual, expected, tolerance, what);
    if (!mismatch.empty()) RC_FAIL(mismatch);
}

// Fails the property unless f throws a ShapeError whose message names `op` and both shapes.
template <class F>
void checkShapeError(F f, const std::string& op, const Shape& a, const Shape& b) {
    try {
        f();
    } catch (const xgrad::ShapeError& e) {
        const std::string message = e.what();
        for (const std::string& part : {op, xgrad::shape_str(a), xgrad::shape_str(b)}) {
            if (message.find(part) == std::string::npos) {
                RC_FAIL("ShapeError message '" + message + "' does not contain '" + part + "'");
            }
        }
        return;
    }
    RC_FAIL(op + " of shapes " + xgrad::shape_str(a) + " and " + xgrad::shape_str(b) + " did not throw a ShapeError");
}

// f applied elementwise under numpy broadcasting, by explicit index arithmetic.
template <class F>
Array broadcastApply(const Array& a, const Array& b, F f) {
    const Shape sa = xgrad::to_shape(a.shape());
    const Shape sb = xgrad::to_shape(b.shape());
    const Shape out_shape = broadcastShape(sa, sb);
    const std::size_t rank = out_shape.size();
    // Strides of a and b over the output's index space (0 along broadcast dims).
    auto strides = [&](const Shape& s) {
        std::vector<std::size_t> st(rank, 0);
        std::size_t step = 1;
        for (std::size_t i = s.size(); i-- > 0;) {
            if (s[i] != 1) st[rank - s.size() + i] = step;
            step *= s[i];
        }
        return st;
    };
    const auto st_a = strides(sa);
    const auto st_b = strides(sb);
    Array out = Array::from_shape(out_shape);
    for (std::size_t flat = 0; flat < out.size(); ++flat) {
        std::size_t rest = flat;
        std::size_t ia = 0;
        std::size_t ib = 0;
        for (std::size_t i = rank; i-- > 0;) {
            const std::size_t idx = rest % out_shape[i];
            rest /= out_shape[i];
            ia += idx * st_a[i];
            ib += idx * st_b[i];
        }
        out.data()[flat] = f(a.data()[ia], b.data()[ib]);
    }
    return out;
}

template <class F>
Array mapValues(const Array& x, F f) {
    Array out = x;
    for (auto& v : out) v = f(v);
    return out;
}

}  // namespace xgrad_test
