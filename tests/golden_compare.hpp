// What the golden tests of the normalization layers share: a fixture that a committed script in
// tests/golden wrote with torch, and the comparison of a result with it, element by element within
// a relative error of 1e-5 (|actual - torch| / max(1, |torch|)), printing the worst error so that a
// run shows the margins.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

namespace xgrad_test {

inline constexpr double golden_tolerance = 1e-5;

// <case>_<name>.npy, float32, from the fixtures' folder.
inline xt::xarray<float> loadGolden(const std::string& case_name, const std::string& name) {
    return xt::load_npy<float>(std::string(XGRAD_GOLDEN_DIR) + "/" + case_name + "_" + name + ".npy");
}

// `actual` against the fixture <case>_<fixture>, reported as `name`.
inline void expectCloseToGolden(const xt::xarray<float>& actual, const std::string& case_name, const std::string& name,
                                const std::string& fixture) {
    const xt::xarray<float> expected = loadGolden(case_name, fixture);
    ASSERT_EQ(actual.shape(), expected.shape()) << case_name << " " << name;
    double worst = 0.0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const double e = expected.data()[i];
        const double err = std::abs(actual.data()[i] - e) / std::max(1.0, std::abs(e));
        worst = std::isnan(err) ? INFINITY : std::max(worst, err);
    }
    std::printf("%-28s %-24s worst relative error %.2e\n", case_name.c_str(), name.c_str(), worst);
    EXPECT_LE(worst, golden_tolerance) << case_name << " " << name;
}

inline void expectCloseToGolden(const xt::xarray<float>& actual, const std::string& case_name, const std::string& name) {
    expectCloseToGolden(actual, case_name, name, name);
}

}  // namespace xgrad_test
