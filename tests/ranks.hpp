// For the tests that run on every rank of a job (tests/mpi_test_main.cpp): this process's place in
// xgrad::world(), and each rank's share of a global batch that every rank draws alike.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xview.hpp>

#include "layers/distributed/communicator.hpp"

namespace xgrad_test {

inline xgrad::Communicator& job() { return *xgrad::world(); }
inline std::size_t ranks() { return static_cast<std::size_t>(job().size()); }
inline std::size_t this_rank() { return static_cast<std::size_t>(job().rank()); }

// `total` samples over the ranks: as even as can be, or the first rank's share given and the rest
// spread over the others (0 empties it).
inline std::vector<std::size_t> shares(std::size_t total, std::optional<std::size_t> first = std::nullopt) {
    const std::size_t w = ranks();
    std::vector<std::size_t> sizes(w, 0);
    std::size_t rest = total, from = 0;
    if (first && w > 1) {
        sizes[0] = *first;
        rest -= *first;
        from = 1;
    }
    for (std::size_t r = from; r < w; ++r) sizes[r] = rest / (w - from) + (r - from < rest % (w - from) ? 1 : 0);
    return sizes;
}

// This rank's samples of a global batch: sizes[r] consecutive samples for rank r, in rank order.
template <class T>
xt::xarray<T> share_of(const xt::xarray<T>& global, const std::vector<std::size_t>& sizes) {
    std::size_t begin = 0;
    for (std::size_t r = 0; r < this_rank(); ++r) begin += sizes[r];
    return xt::view(global, xt::range(begin, begin + sizes[this_rank()]));
}

}  // namespace xgrad_test
