// How a pass over an (N, C, S) tensor is cut into TBB tasks: the one thing Schedule varies, the
// same for both layouts. A piece is samples [n0, n1) of channels [c0, c1):
//   serial         one piece, in the calling thread;
//   over_channels  all samples of a range of channels per task;
//   over_blocks    all channels of a fixed block of samples per task.
// Each task has at least parallel.task_elems elements.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "bench/variants/bn_variants.hpp"

namespace bn_variants::detail {

inline std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// over_blocks: samples per block. Blocks are fixed by the shape, not by TBB's splitting, so that
// the merge order of the partials does not depend on the thread count.
inline std::size_t block_samples(const ChannelShape& sh, const Parallel& par) {
    return ceil_div(par.task_elems, std::max<std::size_t>(1, sh.c * sh.s));
}

// Calls body(n0, n1, c0, c1) on pieces that cover the tensor once.
template <class Body>
void for_pieces(const ChannelShape& sh, const Parallel& par, const Body& body) {
    switch (par.schedule) {
        case Schedule::serial:
            body(std::size_t{0}, sh.n, std::size_t{0}, sh.c);
            break;
        case Schedule::over_channels: {
            const std::size_t grain = ceil_div(par.task_elems, std::max<std::size_t>(1, sh.per_channel()));
            tbb::parallel_for(tbb::blocked_range<std::size_t>(0, sh.c, grain),
                              [&](const tbb::blocked_range<std::size_t>& r) {
                                  body(std::size_t{0}, sh.n, r.begin(), r.end());
                              });
            break;
        }
        case Schedule::over_blocks: {
            const std::size_t per = block_samples(sh, par);
            tbb::parallel_for(std::size_t{0}, ceil_div(sh.n, per), [&](std::size_t b) {
                body(b * per, std::min(sh.n, (b + 1) * per), std::size_t{0}, sh.c);
            });
            break;
        }
    }
}

// One State per channel, folded from the pieces of the tensor: add(states, n0, n1, c0, c1) folds a
// piece into states[0, c1 - c0), and merge(into, from) appends the state of a later piece. A
// default-constructed State is the empty one. over_blocks folds each block into partials of its
// own, then merges them channel by channel in block order.
template <class State, class Add, class Merge>
std::vector<State> reduce(const ChannelShape& sh, const Parallel& par, const Add& add, const Merge& merge) {
    std::vector<State> states(sh.c);
    if (par.schedule != Schedule::over_blocks) {
        for_pieces(sh, par, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
            add(states.data() + c0, n0, n1, c0, c1);
        });
        return states;
    }
    const std::size_t per = block_samples(sh, par);
    const std::size_t blocks = ceil_div(sh.n, per);
    std::vector<State> partial(blocks * sh.c);
    for_pieces(sh, par, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
        add(partial.data() + (n0 / per) * sh.c + c0, n0, n1, c0, c1);
    });
    for (std::size_t b = 0; b < blocks; ++b) {
        for (std::size_t c = 0; c < sh.c; ++c) merge(states[c], partial[b * sh.c + c]);
    }
    return states;
}

// The merge of reduce() for states that are K sums.
struct AddSums {
    template <class Acc, std::size_t K>
    void operator()(std::array<Acc, K>& into, const std::array<Acc, K>& from) const {
        for (std::size_t k = 0; k < K; ++k) into[k] += from[k];
    }
};

}  // namespace bn_variants::detail
