// Per-channel sums with TBB: the one reduction behind every normalization's statistics and backward
// sums (layers/normalization/statistics.hpp, backward_sums.hpp) and the bias gradients, where
// xtensor's reducers would use neither SIMD nor threads. A grouping other than BN's (per sample
// and group, per sample) is the same reduction over another (N, C, S) view of the tensor
// (grouping.hpp): its "channels" are then the groups.
//
// A tensor is seen as (N, C, S) row-major: NCHW is (N, C, H*W), (N, C) is (N, C, 1), (N, C, L) is
// (N, C, L). For every channel c, K quantities are summed over all n and s, in double even for
// float data. What is summed is a term: term(c, i) -> std::array<double, K> (or Products<K>, below),
// a pure function of the channel and of the flat index i into the tensor (so one term can read several tensors of
// the same shape, e.g. x and dy). The primitive owns the loops, so one term definition is
// vectorized both along a channel's contiguous runs and across channels. A term that also depends
// on the sample n (per-row data where the channels are columns: the elementwise affine's dgamma
// over an (N, M, 1) view) is term(c, n, i): the loops know n, the term would have to divide i for it.
//
// Determinism: the order of every addition depends only on the shape (channel_partition) and the
// build (kLanes, and its FMA), never on the thread count or on which thread ran what, so 1 and 2
// threads give bitwise equal sums.
//  - A channel's N*S elements are cut into blocks. A block's partial is summed in kLanes
//    independent lanes (what lets the compiler vectorize a sum without reassociating it), then
//    the lanes pairwise; the channel's result is 0 + its block partials in block order.
//  - S < kRowsBelowS, the "rows" layout: a block is a range of whole rows n. Each row's C*S
//    contiguous elements are added elementwise into per-(c, s) accumulators, which vectorizes
//    across channels (runs of S would be too short), four rows summed pairwise at a time from the
//    block's first row, the last few rows alone; folded over s at the end of the block.
//  - Otherwise the "runs" layout: a block is a range of the channel's flattened (n, s) index,
//    walked as contiguous runs of at most S elements: element r of a run goes to lane r % kLanes
//    (a run's last len % kLanes, past its whole vectors, to lanes 0, 1, ...); lanes carry on across
//    the runs.
//    A block is whole rows where S <= kBlockElems; for a term that does not read ahead, its
//    channels' runs are then read in memory order, row by row: the same additions.
// The schedule (serial; parallel over channels; parallel over (block, channel) items into
// partials, then a combine pass in block order) only decides who computes which (channel, block)
// partial, so it may depend on the thread count without changing a bit of the result. Small
// inputs run serially in the calling thread: no task is spawned. A Products term is added with
// fused multiply-adds in the runs layout (where the build targets a fast FMA) and multiplied
// then added in the rows layout: which of the two depends on the shape and the build alone.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include "autodiff/shape.hpp"
#include "autodiff/threads.hpp"
#include "layers/normalization/arithmetic.hpp"

namespace xgrad {

struct ChannelShape {
    std::size_t n = 0;
    std::size_t c = 0;
    std::size_t s = 1;

    std::size_t per_channel() const { return n * s; }
    std::size_t size() const { return n * c * s; }
};

// (N, C, product of the rest) of a shape of rank >= 2; a ShapeError otherwise.
template <class Sh>
ChannelShape channel_shape(const Sh& shape) {
    if (shape.size() < 2) {
        throw ShapeError("channel reduction: expected a shape (N, C, ...), got " + shape_str(shape));
    }
    ChannelShape cs{static_cast<std::size_t>(shape[0]), static_cast<std::size_t>(shape[1]), 1};
    for (std::size_t d = 2; d < shape.size(); ++d) cs.s *= static_cast<std::size_t>(shape[d]);
    return cs;
}

// A term's K quantities as products value·factor, for a term whose quantities are (mostly)
// products: the runs layout adds each with a fused multiply-add where the build targets a fast one
// (one rounding; elsewhere a product and a sum), so that a square costs what a sum costs. A plain
// sum is a product with factor 1, whose multiply-add gives the bits of the add. The rows layout
// multiplies first and adds, as for sums.
template <std::size_t K>
struct Products {
    std::array<double, K> value;
    std::array<double, K> factor;
};

template <class R, std::size_t K>
inline constexpr bool is_products = std::same_as<std::remove_cvref_t<R>, Products<K>>;

template <class R, std::size_t K>
concept ChannelTermResult = std::convertible_to<R, std::array<double, K>> || is_products<R, K>;

template <class F, std::size_t K>
concept ChannelTerm = requires(const F& f, std::size_t c, std::size_t i) {
    { f(c, i) } -> ChannelTermResult<K>;
} || requires(const F& f, std::size_t c, std::size_t n, std::size_t i) {
    { f(c, n, i) } -> ChannelTermResult<K>;
};

// Data of more bytes than this comes from memory rather than from the last-level cache: half the
// 32 MiB of the hosts measured (bench/RESULTS.md). What is counted is the caller's: one tensor
// (the streamed output, the statistics' input) or all a pass reads and writes (read_ahead, the
// blocked walk).
inline constexpr std::size_t kPastTheCachesBytes = std::size_t{1} << 24;

inline bool past_the_caches(std::size_t elements, std::size_t element_bytes) {
    return elements * element_bytes > kPastTheCachesBytes;
}

// A term with the tensors it reads, element i of each at i, so that the runs layout can ask for
// lines ahead of those it sums: near a run's end the first lines of the channel's run in the next
// sample (its whole run where runs are no longer than `distance`, a lead of one run), and, where the
// tensors come from memory, `distance` elements further along a longer run. A channel's runs are S
// elements long and C·S apart, and the hardware prefetcher starts afresh at each run and at each
// 4 KiB page, which leaves a walk over data from memory waiting on most of its loads; within long
// runs from cache it keeps up alone, and asking too costs time (bench/RESULTS.md). What is asked for
// is the channel's own data, which a cache-blocked pass reads next. Called as the term is.
template <class F, class T, std::size_t M>
struct ReadAhead {
    static constexpr std::size_t distance = 16384 / sizeof(T);  // elements of each tensor

    F term;
    std::array<const T*, M> tensors;
    bool within_runs;

    template <class... Index>
        requires std::invocable<const F&, Index...>
    auto operator()(Index... index) const {
        return term(index...);
    }
    // The lines of elements [i, i + count) of every tensor; i + count within the tensors.
    void prefetch(std::size_t i, std::size_t count) const {
        constexpr std::size_t line = 64 / sizeof(T);
        for (const T* t : tensors) {
            for (std::size_t k = 0; k < count; k += line) __builtin_prefetch(t + i + k);
        }
    }
};

// `term` reading ahead in `tensors`, each of `elements` elements.
template <class F, class T, class... More>
ReadAhead<F, T, 1 + sizeof...(More)> read_ahead(F term, std::size_t elements, const T* tensor, const More*... more) {
    return {std::move(term), {tensor, more...}, past_the_caches(elements, (1 + sizeof...(More)) * sizeof(T))};
}

template <class F>
concept ReadsAhead = requires(const F& f, std::size_t i) {
    f.prefetch(i, i);
    { f.within_runs } -> std::convertible_to<bool>;
    { F::distance } -> std::convertible_to<std::size_t>;
};

enum class ChannelLayout { rows, runs };

// The shape-only cut that fixes the summation order (see the comment at the top).
struct ChannelPartition {
    ChannelLayout layout = ChannelLayout::runs;
    std::size_t block = 0;   // rows layout: rows of N per block; runs layout: a channel's elements per block
    std::size_t blocks = 0;  // per channel; 0 when there are no elements
};

enum class ChannelSchedule { automatic, serial, over_channels, over_blocks };

namespace channel_detail {

// Independent accumulators per quantity: enough for the multiply-adds' latency at the vector width
// the build targets (K = 2 quantities of 32 doubles fill 8 of AVX-512's 32 registers, or 16 at
// 256 bits; with AVX2's 16 registers, 16 lanes). A sum's bits depend on it, so on the build, as on
// its FMA.
#if defined(__AVX512F__)
inline constexpr std::size_t kLanes = 32;
#else
inline constexpr std::size_t kLanes = 16;
#endif
inline constexpr std::size_t kBlockElems = 1 << 14;    // a channel's elements per block, about
inline constexpr std::size_t kRowsBelowS = 16;         // S below this uses the rows layout
inline constexpr std::size_t kRowChunk = 1024;         // rows layout: accumulators per quantity (L1)
inline constexpr std::size_t kTile = 16;               // rows layout: accumulators per quantity in registers
inline constexpr std::size_t kRowPassBytes = 1 << 15;  // rows layout: a pass's rows at 8 bytes a position (L1)
inline constexpr std::size_t kMinTileRows = 16;        // rows layout: register tiles where this many whole rows fill a pass
inline constexpr std::size_t kRowGroup = 4;            // rows layout: rows summed before they meet an accumulator
inline constexpr std::size_t kSerialBelow = 1 << 16;   // fewer elements than this: no tasks
inline constexpr std::size_t kTaskElems = 1 << 14;     // elements per task, at least
inline constexpr std::size_t kLaneBytes = 1 << 14;     // runs layout: the kept lanes of a row walk's channels (L1)

template <std::size_t K>
using Sums = std::array<double, K>;

template <std::size_t K>
void add_into(Sums<K>& dst, const Sums<K>& p) {
    for (std::size_t k = 0; k < K; ++k) dst[k] += p[k];
}

// term(c, i) or term(c, n, i), whichever the term takes, as the term gives it; element i is in sample n.
template <class F>
auto evaluate_term(const F& term, std::size_t c, std::size_t n, std::size_t i) {
    if constexpr (std::invocable<const F&, std::size_t, std::size_t, std::size_t>) {
        return term(c, n, i);
    } else {
        return term(c, i);
    }
}

// The term's quantities as sums (products multiplied out).
template <std::size_t K, class F>
Sums<K> evaluate(const F& term, std::size_t c, std::size_t n, std::size_t i) {
    const auto t = evaluate_term(term, c, n, i);
    if constexpr (is_products<decltype(t), K>) {
        Sums<K> s;
        for (std::size_t k = 0; k < K; ++k) s[k] = t.value[k] * t.factor[k];
        return s;
    } else {
        return t;
    }
}

// lanes[k][l] += the term's quantity k: a product by a multiply-add (mul_add).
template <std::size_t K, class F, std::size_t R>
void add_term(double (&lanes)[K][R], std::size_t l, const F& term, std::size_t c, std::size_t n, std::size_t i) {
    if constexpr (is_products<decltype(evaluate_term(term, c, n, i)), K>) {
        const auto t = evaluate_term(term, c, n, i);
        for (std::size_t k = 0; k < K; ++k) lanes[k][l] = normalization_detail::mul_add(t.value[k], t.factor[k], lanes[k][l]);
    } else {
        const Sums<K> t = evaluate<K>(term, c, n, i);
        for (std::size_t k = 0; k < K; ++k) lanes[k][l] += t[k];
    }
}

// lanes += the terms of the run of channel c in sample n that starts at index `base`, `len`
// elements long: element r goes to lane r % R (R = kLanes, except in one_run_block: 8 or 16 there);
// before(r) ahead of each R elements from r and of the last fewer. Always inlined, so that the
// caller's lanes stay in registers (a call would take them by reference, from memory, at every
// addition).
template <std::size_t K, class F, class Before, std::size_t R>
[[gnu::always_inline]] inline void add_run(double (&lanes)[K][R], const F& term, std::size_t c, std::size_t n,
                                           std::size_t base, std::size_t len, const Before& before) {
    std::size_t r = 0;
    for (; r + R <= len; r += R) {
        before(r);
        for (std::size_t l = 0; l < R; ++l) add_term<K>(lanes, l, term, c, n, base + r + l);
    }
    if (r == len) return;
    before(r);  // the last len % R too: all of a run shorter than R
    for (std::size_t l = 0; r + l < len; ++l) add_term<K>(lanes, l, term, c, n, base + r + l);
}

// The lanes pairwise, into one sum per quantity.
template <std::size_t K>
Sums<K> fold_lanes(double (&lanes)[K][kLanes]) {
    Sums<K> p;
    for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t w = kLanes / 2; w > 0; w /= 2) {
            for (std::size_t l = 0; l < w; ++l) lanes[k][l] += lanes[k][l + w];
        }
        p[k] = lanes[k][0];
    }
    return p;
}

// Runs layout: the partial of channel c over its flattened (n, s) elements [j0, j1).
template <std::size_t K, class F>
Sums<K> run_block(const F& term, const ChannelShape& sh, std::size_t c, std::size_t j0, std::size_t j1) {
    double lanes[K][kLanes] = {};
    for (std::size_t j = j0; j < j1;) {
        const std::size_t n = j / sh.s;
        const std::size_t s = j % sh.s;
        const std::size_t len = std::min(sh.s - s, j1 - j);
        const std::size_t base = (n * sh.c + c) * sh.s + s;
        const bool has_next = n + 1 < sh.n;
        const std::size_t next = has_next ? ((n + 1) * sh.c + c) * sh.s : 0;
        const std::size_t run_left = sh.s - s;  // to the run's end, which a block may cut before
        add_run<K>(lanes, term, c, n, base, len, [&]([[maybe_unused]] std::size_t r) {
            if constexpr (ReadsAhead<F>) {
                // Element r + distance of the run (from memory), or past its end the next run's
                // element as far past its start (r itself where the run is short). Each within one run.
                const std::size_t ahead = r + F::distance;
                if (ahead < run_left) {
                    if (term.within_runs) term.prefetch(base + ahead, std::min(kLanes, run_left - ahead));
                } else if (has_next) {
                    const std::size_t into_next = run_left > F::distance ? ahead - run_left : r;
                    if (into_next < sh.s) term.prefetch(next + into_next, std::min(kLanes, sh.s - into_next));
                }
            }
        });
        j += len;
    }
    return fold_lanes<K>(lanes);
}

// The lanes pairwise as fold_lanes adds them, level by level at constant widths, so that the
// lanes stay in registers (fold_lanes' loop over the widths keeps them on the stack, each level's
// loads waiting on the stores before them).
template <std::size_t W, std::size_t K, std::size_t R>
[[gnu::always_inline]] inline Sums<K> fold_lanes_in_registers(double (&lanes)[K][R]) {
    for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t l = 0; l < W; ++l) lanes[k][l] += lanes[k][l + W];
    }
    if constexpr (W > 1) {
        return fold_lanes_in_registers<W / 2, K>(lanes);
    } else {
        Sums<K> p;
        for (std::size_t k = 0; k < K; ++k) p[k] = lanes[k][0];
        return p;
    }
}

// f(first) for the first lane of each chunk of `chunk` lanes of R that the first `count` lanes
// reach, first a compile-time constant (std::integral_constant), so that the lanes f touches stay
// in registers.
template <std::size_t chunk, std::size_t R, class F>
[[gnu::always_inline]] inline void for_each_reached_chunk(std::size_t count, const F& f) {
    [&]<std::size_t... Q>(std::index_sequence<Q...>) {
        ((count > Q * chunk ? f(std::integral_constant<std::size_t, Q * chunk>{}) : void()), ...);
    }(std::make_index_sequence<R / chunk>{});
}

// kChunk lanes of a run's tail are added as one: 64 bytes.
inline constexpr std::size_t kChunk = 8;
static_assert(kLanes % kChunk == 0);

// one_run_block's sums in R lanes: kLanes, or 8 or 16 for a run of at most that many elements
// (len <= R then).
template <std::size_t K, std::size_t R, class F>
[[gnu::always_inline]] inline Sums<K> run_in_lanes(const F& term, std::size_t c, std::size_t base, std::size_t len) {
    constexpr bool products = is_products<decltype(evaluate_term(term, c, 0, base)), K>;
    const std::size_t whole = len - len % R;
    const std::size_t tail = len - whole;
    // The tail's terms before the run's: its copy is written element by element and read a vector
    // at a time, and a vector load right after narrower stores to it waits for them to retire (no
    // store forwarding).
    double value[K][R];
    double factor[K][products ? R : 1];
    for_each_reached_chunk<kChunk, R>(tail, [&](auto first) {
        for (std::size_t k = 0; k < K; ++k) {
            std::fill_n(value[k] + first, kChunk, 0.0);
            if constexpr (products) std::fill_n(factor[k] + first, kChunk, 0.0);
        }
    });
    for (std::size_t l = 0; l < tail; ++l) {
        const auto t = evaluate_term(term, c, 0, base + whole + l);
        if constexpr (products) {
            for (std::size_t k = 0; k < K; ++k) {
                value[k][l] = t.value[k];
                factor[k][l] = t.factor[k];
            }
        } else {
            const Sums<K> sums = t;
            for (std::size_t k = 0; k < K; ++k) value[k][l] = sums[k];
        }
    }
    double lanes[K][R] = {};
    add_run<K>(lanes, term, c, 0, base, whole, [](std::size_t) {});
    for_each_reached_chunk<kChunk, R>(tail, [&](auto first) {
        for (std::size_t k = 0; k < K; ++k) {
            for (std::size_t l = first; l < first + kChunk; ++l) {
                if constexpr (products) {
                    lanes[k][l] = normalization_detail::mul_add(value[k][l], factor[k][l], lanes[k][l]);
                } else {
                    lanes[k][l] += value[k][l];
                }
            }
        }
    });
    return fold_lanes_in_registers<R / 2, K>(lanes);
}

// Runs layout, a block within one run that starts at `base`, `len` elements: run_block's
// additions with the lanes in registers throughout. A tail short of a whole vector of lanes is
// added from a zero-padded copy as whole chunks of kChunk lanes, and the lanes are folded at
// constant widths. A run of at most 8 or 16 elements (GroupNorm's groups at S = 1) is summed in 8
// or 16 lanes: the fold's levels above those only add lanes that stay +0. Adding +0 (or a
// multiply-add of +0 by +0) keeps a lane's bits unless the lane is -0 (a product that underflowed),
// which it makes +0; a zero's sign shows only in a sum that is zero, and a channel's sum starts at
// +0 (+0 plus -0 is +0), so the channel's sums have run_block's bits either way. The
// (1, groups, L) views of GroupNorm, LayerNorm and InstanceNorm are one run a group; a group of a
// few hundred elements spent most of its time in run_block's tail and fold.
template <std::size_t K, class F>
Sums<K> one_run_block(const F& term, std::size_t c, std::size_t base, std::size_t len) {
    if (len <= kChunk) return run_in_lanes<K, kChunk>(term, c, base, len);
    if constexpr (kLanes > 2 * kChunk) {
        if (len <= 2 * kChunk) return run_in_lanes<K, 2 * kChunk>(term, c, base, len);
    }
    return run_in_lanes<K, kLanes>(term, c, base, len);
}

// Runs layout, a block of whole rows [n0, n1), for a term that does not read ahead: adds the
// partials of channels [c0, c1) to out[0, c1 - c0), the additions of run_block's channel by
// channel walked row by row, each channel's lanes kept between rows: in memory order, up to
// kChannels channels at a time. A channel's runs are C·S apart, and channel by channel the
// hardware prefetchers start afresh at each run; row by row they read on ("Reductions row by row",
// bench/RESULTS.md). A term that reads ahead asks for the channel's next run, which the channel
// walk takes next.
template <std::size_t K, class F>
void row_runs_into(const F& term, const ChannelShape& sh, std::size_t n0, std::size_t n1, std::size_t c0,
                   std::size_t c1, Sums<K>* out) {
    constexpr std::size_t kChannels = std::max<std::size_t>(1, kLaneBytes / (K * kLanes * sizeof(double)));
    double kept[kChannels][K][kLanes];
    for (std::size_t a = c0; a < c1; a += kChannels) {
        const std::size_t e = std::min(c1, a + kChannels);
        for (std::size_t c = a; c < e; ++c) std::memset(kept[c - a], 0, sizeof kept[c - a]);  // +0.0
        for (std::size_t n = n0; n < n1; ++n) {
            for (std::size_t c = a; c < e; ++c) {
                // In registers over the run: in place, one of many channels' lanes would be loaded
                // and stored at every addition.
                double lanes[K][kLanes];
                std::memcpy(lanes, kept[c - a], sizeof lanes);
                add_run<K>(lanes, term, c, n, (n * sh.c + c) * sh.s, sh.s, [](std::size_t) {});
                std::memcpy(kept[c - a], lanes, sizeof lanes);
            }
        }
        for (std::size_t c = a; c < e; ++c) add_into(out[c - c0], fold_lanes<K>(kept[c - a]));
    }
}

// chan[j] = j / s for the positions j < width of a rows-layout chunk: the channel of each relative
// to the chunk's first, the same for every chunk. Counted rather than divided, and once per block
// rather than per chunk: the division per position, then the count per chunk, each took about a
// third of rows_chunk's time in GroupNorm(25)'s statistics at (60, 100) (groups of 4).
inline void chunk_channels(std::uint32_t* chan, std::size_t width, std::size_t s) {
    for (std::uint32_t j = 0, c = 0, p = 0; j < width; ++j) {
        chan[j] = c;
        if (++p == s) {
            p = 0;
            ++c;
        }
    }
}

// Rows layout: adds the partials of channels [a, e) over rows [n0, n1) to out[0, e - a).
// (e - a) * S <= kRowChunk; chan as chunk_channels gives it (read where S > 1). Each (c, s)
// position of a row has its own accumulator, in memory. The rows are taken a few at a time, as
// many as stay in L1 (kRowPassBytes), and where rows are short the accumulators of kTile positions
// at a time sit in registers over them; positions past the last whole tile, and all of them in
// long rows, are added in memory directly. Either way a position adds the terms of its row groups
// n0 + kRowGroup·m, each group's summed pairwise (so that long rows store each accumulator once
// per group), in order, then the last rows alone, and the build contracts no multiply-add on its
// own (-ffp-contract=off), so its sum has the same bits whether a split of the channels put it in
// a tile or not, and whatever the pass boundaries.
template <std::size_t K, bool UnitS, class F>
void rows_chunk(const F& term, const ChannelShape& sh, std::size_t n0, std::size_t n1, std::size_t a,
                std::size_t e, const std::uint32_t* chan, Sums<K>* out) {
    const std::size_t width = (e - a) * sh.s;
    const std::size_t row = sh.c * sh.s;
    const std::size_t first = a * sh.s;  // of position 0 in a row
    alignas(64) double acc[K][kRowChunk];
    for (std::size_t k = 0; k < K; ++k) std::fill_n(acc[k], width, 0.0);
    const auto channel = [&](std::size_t j) -> std::size_t {
        if constexpr (UnitS) {
            return a + j;
        } else {
            return a + chan[j];
        }
    };
    // Whole row groups per pass, so that a pass ends inside a group only at n1.
    const std::size_t rows_per_pass =
        std::max<std::size_t>(1, kRowPassBytes / (width * sizeof(double) * kRowGroup)) * kRowGroup;
    // A tile's loads and stores pay off over many rows, and a tile walks down the rows: where they
    // are long (whatever part of them this chunk has), that walk strides past the prefetchers, and
    // the rows stream through memory instead.
    const bool short_rows = kRowPassBytes / (row * sizeof(double)) >= kMinTileRows;
    const std::size_t tiled = short_rows ? width - width % kTile : 0;
    // Positions [j0, j1) over rows [p0, p1) into acc[k][j0 + ...] or into a tile, both through `into`.
    const auto add_rows = [&](std::size_t j0, std::size_t j1, std::size_t p0, std::size_t p1, auto&& into) {
        std::size_t n = p0;
        static_assert(kRowGroup == 4);
        for (; n + kRowGroup <= p1; n += kRowGroup) {
            const std::size_t base = n * row + first;
            for (std::size_t j = j0; j < j1; ++j) {
                const std::size_t c = channel(j);
                Sums<K> t = evaluate<K>(term, c, n, base + j);
                Sums<K> u = evaluate<K>(term, c, n + 2, base + 2 * row + j);
                add_into(t, evaluate<K>(term, c, n + 1, base + row + j));
                add_into(u, evaluate<K>(term, c, n + 3, base + 3 * row + j));
                add_into(t, u);
                into(j, t);
            }
        }
        for (; n < p1; ++n) {
            const std::size_t base = n * row + first;
            for (std::size_t j = j0; j < j1; ++j) into(j, evaluate<K>(term, channel(j), n, base + j));
        }
    };
    for (std::size_t p0 = n0; p0 < n1; p0 += rows_per_pass) {
        const std::size_t p1 = std::min(n1, p0 + rows_per_pass);
        for (std::size_t j0 = 0; j0 < tiled; j0 += kTile) {
            double tile[K][kTile];
            for (std::size_t k = 0; k < K; ++k) std::copy_n(acc[k] + j0, kTile, tile[k]);
            add_rows(j0, j0 + kTile, p0, p1, [&](std::size_t j, const Sums<K>& t) {
                for (std::size_t k = 0; k < K; ++k) tile[k][j - j0] += t[k];
            });
            for (std::size_t k = 0; k < K; ++k) std::copy_n(tile[k], kTile, acc[k] + j0);
        }
        add_rows(tiled, width, p0, p1, [&](std::size_t j, const Sums<K>& t) {
            for (std::size_t k = 0; k < K; ++k) acc[k][j] += t[k];
        });
    }
    // A run-time S of 1 kept this loop scalar, and its scalar reloads of the vector loop's stores
    // stalled: a fifth of the sums over 16 rows of 512 channels.
    const std::size_t positions = UnitS ? 1 : sh.s;
    for (std::size_t c = 0; c < e - a; ++c) {
        Sums<K> p{};
        for (std::size_t s = 0; s < positions; ++s) {
            for (std::size_t k = 0; k < K; ++k) p[k] += acc[k][c * positions + s];
        }
        add_into(out[c], p);
    }
}

// Adds the partials of block b for channels [c0, c1) to out[0, c1 - c0).
template <std::size_t K, class F>
void block_into(const F& term, const ChannelShape& sh, const ChannelPartition& part, std::size_t b,
                std::size_t c0, std::size_t c1, Sums<K>* out) {
    if (part.layout == ChannelLayout::runs) {
        const std::size_t j0 = b * part.block;
        const std::size_t j1 = std::min(sh.per_channel(), j0 + part.block);
        // A channel of one run (the (1, groups, S) views of GroupNorm, LayerNorm and InstanceNorm),
        // unless the term asks for lines ahead within it (from memory).
        bool asks_within_runs = false;
        if constexpr (ReadsAhead<F>) asks_within_runs = term.within_runs;
        if (sh.n == 1 && !asks_within_runs) {
            for (std::size_t c = c0; c < c1; ++c) add_into(out[c - c0], one_run_block<K>(term, c, c * sh.s + j0, j1 - j0));
            return;
        }
        // Whole rows of several channels, for a term that does not read ahead: row by row.
        if constexpr (!ReadsAhead<F>) {
            if (part.block % sh.s == 0 && c1 - c0 > 1 && j1 - j0 > sh.s) {
                row_runs_into<K>(term, sh, j0 / sh.s, j1 / sh.s, c0, c1, out);
                return;
            }
        }
        for (std::size_t c = c0; c < c1; ++c) add_into(out[c - c0], run_block<K>(term, sh, c, j0, j1));
        return;
    }
    const std::size_t n0 = b * part.block;
    const std::size_t n1 = std::min(sh.n, n0 + part.block);
    const std::size_t step = kRowChunk / sh.s;
    std::uint32_t chan[kRowChunk];  // the channel of each position of a chunk, where S > 1
    if (sh.s > 1) chunk_channels(chan, std::min(c1 - c0, step) * sh.s, sh.s);
    for (std::size_t a = c0; a < c1; a += step) {
        const std::size_t e = std::min(c1, a + step);
        if (sh.s == 1) {
            rows_chunk<K, true>(term, sh, n0, n1, a, e, nullptr, out + (a - c0));
        } else {
            rows_chunk<K, false>(term, sh, n0, n1, a, e, chan, out + (a - c0));
        }
    }
}

// Channels per task, so that a task has at least kTaskElems elements (and, across channels,
// enough of them to fill vectors).
inline std::size_t channel_grain(const ChannelShape& sh, const ChannelPartition& part, std::size_t elems_per_channel) {
    std::size_t g = (kTaskElems + elems_per_channel - 1) / std::max<std::size_t>(elems_per_channel, 1);
    if (part.layout == ChannelLayout::rows) g = std::max(g, kTile);
    return std::clamp<std::size_t>(g, 1, std::max<std::size_t>(sh.c, 1));
}

}  // namespace channel_detail

inline ChannelPartition channel_partition(const ChannelShape& sh) {
    using namespace channel_detail;
    ChannelPartition part;
    if (sh.per_channel() == 0 || sh.c == 0) return part;
    if (sh.s < kRowsBelowS) {
        part.layout = ChannelLayout::rows;
        part.block = kBlockElems / sh.s;
        part.blocks = (sh.n + part.block - 1) / part.block;
    } else {
        part.layout = ChannelLayout::runs;
        // Whole rows per block when a row fits, so that runs are not cut.
        part.block = sh.s <= kBlockElems ? sh.s * (kBlockElems / sh.s) : kBlockElems;
        part.blocks = (sh.per_channel() + part.block - 1) / part.block;
    }
    return part;
}

// What ChannelSchedule::automatic runs with `threads` threads. Never changes the result.
inline ChannelSchedule channel_schedule(const ChannelShape& sh, int threads) {
    using namespace channel_detail;
    const ChannelPartition part = channel_partition(sh);
    if (threads <= 1 || part.blocks == 0 || sh.size() < kSerialBelow) return ChannelSchedule::serial;
    if (part.blocks == 1) return ChannelSchedule::over_channels;
    // Runs layout: whole channels per task balance once there are several per thread. Rows
    // layout: a task over channels would read a slice of every row; over blocks it reads whole rows.
    if (part.layout == ChannelLayout::runs && sh.c >= 4 * static_cast<std::size_t>(threads)) {
        return ChannelSchedule::over_channels;
    }
    return ChannelSchedule::over_blocks;
}

// For each channel, the K sums of term(c, i) over its elements i. `schedule` is for tests and
// benchmarks; every schedule gives the same bits.
template <std::size_t K, class F>
    requires ChannelTerm<F, K>
std::vector<std::array<double, K>> channel_sums(const ChannelShape& sh, const F& term,
                                                ChannelSchedule schedule = ChannelSchedule::automatic) {
    using namespace channel_detail;
    std::vector<Sums<K>> out(sh.c, Sums<K>{});
    const ChannelPartition part = channel_partition(sh);
    if (part.blocks == 0) return out;
    if (schedule == ChannelSchedule::automatic) schedule = channel_schedule(sh, available_threads());

    switch (schedule) {
        case ChannelSchedule::automatic:
        case ChannelSchedule::serial:
            for (std::size_t b = 0; b < part.blocks; ++b) block_into<K>(term, sh, part, b, 0, sh.c, out.data());
            break;
        case ChannelSchedule::over_channels:
            tbb::parallel_for(tbb::blocked_range<std::size_t>(0, sh.c, channel_grain(sh, part, sh.per_channel())),
                              [&](const tbb::blocked_range<std::size_t>& r) {
                                  for (std::size_t b = 0; b < part.blocks; ++b) {
                                      block_into<K>(term, sh, part, b, r.begin(), r.end(), out.data() + r.begin());
                                  }
                              });
            break;
        case ChannelSchedule::over_blocks: {
            // partial[b * C + c]; combined below in block order, as the other schedules add.
            std::vector<Sums<K>> partial(part.blocks * sh.c, Sums<K>{});
            // Rows layout: whole row chunks per task, so that no two tasks share the rows' cache lines.
            const std::size_t cgrain = part.layout == ChannelLayout::rows ? std::min(sh.c, kRowChunk / sh.s)
                                                                          : channel_grain(sh, part, std::min(part.block, sh.per_channel()));
            tbb::parallel_for(
                tbb::blocked_range2d<std::size_t>(0, part.blocks, 1, 0, sh.c, cgrain),
                [&](const tbb::blocked_range2d<std::size_t>& r) {
                    for (std::size_t b = r.rows().begin(); b < r.rows().end(); ++b) {
                        block_into<K>(term, sh, part, b, r.cols().begin(), r.cols().end(),
                                      partial.data() + b * sh.c + r.cols().begin());
                    }
                });
            for (std::size_t b = 0; b < part.blocks; ++b) {
                for (std::size_t c = 0; c < sh.c; ++c) add_into(out[c], partial[b * sh.c + c]);
            }
            break;
        }
    }
    return out;
}

// The sums of channels [c0, c1) alone, added into out[0, c1 - c0) in the calling thread: for a
// caller that walks channel blocks itself, e.g. to use a block's data again while it is still in
// cache. Starting from zeros, bitwise equal to what channel_sums gives for these channels.
template <std::size_t K, class F>
    requires ChannelTerm<F, K>
void channel_sums_serial(const ChannelShape& sh, std::size_t c0, std::size_t c1, const F& term,
                         std::array<double, K>* out) {
    const ChannelPartition part = channel_partition(sh);
    for (std::size_t b = 0; b < part.blocks; ++b) channel_detail::block_into<K>(term, sh, part, b, c0, c1, out);
}

// The channels (rows, groups) one call of a stage covers: all of them, the call being parallel
// over the whole tensor, or a block [begin, end) computed in the calling thread (the cache-blocked
// path, normalization/blocked.hpp). Both give the same bits.
struct Rows {
    std::size_t begin;
    std::size_t end;
    bool whole;

    static Rows all(std::size_t count) { return {0, count, true}; }
    static Rows block(std::size_t begin, std::size_t end) { return {begin, end, false}; }
};

// The K sums of term over each channel of `rows`, channel rows.begin + i at i.
template <std::size_t K, class F>
    requires ChannelTerm<F, K>
std::vector<std::array<double, K>> channel_sums_of(const ChannelShape& sh, const Rows& rows, const F& term) {
    if (rows.whole) return channel_sums<K>(sh, term);
    std::vector<std::array<double, K>> sums(rows.end - rows.begin, std::array<double, K>{});
    channel_sums_serial<K>(sh, rows.begin, rows.end, term, sums.data());
    return sums;
}

// store(c, sums) with the K sums of term over channel c, for each channel c of `rows`.
template <std::size_t K, class F, class Store>
    requires ChannelTerm<F, K>
void channel_sums_over(const ChannelShape& sh, const Rows& rows, const F& term, const Store& store) {
    const std::vector<std::array<double, K>> sums = channel_sums_of<K>(sh, rows, term);
    for (std::size_t c = rows.begin; c < rows.end; ++c) store(c, sums[c - rows.begin]);
}

// Σx per channel of raw (N, C, S) data (a bias gradient), instantiated for float and double.
template <class T>
std::vector<double> channel_sum(const T* x, const ChannelShape& shape);

extern template std::vector<double> channel_sum(const float*, const ChannelShape&);
extern template std::vector<double> channel_sum(const double*, const ChannelShape&);

}  // namespace xgrad
