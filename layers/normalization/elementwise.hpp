// Stage 3 and the last step of stage 4: the elementwise passes over the row view (grouping.hpp),
// with the coefficients of fold.hpp and an epilogue (epilogue.hpp) chosen at compile time, the output
// streamed past the caches where it is larger than they are (streams):
//   apply_forward    y  = epilogue((x - centre)·scale + shift)
//   apply_backward   dx = g·alpha + ((x - centre)·k + shift), g = dy through the epilogue's derivative
// Over all rows in parallel blocks, or over a block of rows in the calling thread.
#pragma once

#include <array>
#include <cstddef>

#include "layers/normalization/arithmetic.hpp"
#include "layers/normalization/coefficients.hpp"
#include "layers/normalization/runs.hpp"
#include "layers/normalization/streaming_store.hpp"

namespace xgrad {

namespace normalization_detail {

// Whether a pass streams its output past the caches (streaming_store.hpp): in the cache-blocked
// walk only, where a task is a block of whole groups and a fence per task is cheap; the
// whole-tensor walk's tasks of kTaskElems would each wait on one (measured: slower).
inline bool streams(const ChannelShape& view, std::size_t element_bytes, const Rows& rows) {
    return kStreamingStores && !rows.whole && past_the_caches(view.size(), element_bytes);
}

// The walk both passes share: run(per_element, runs, off, stride, len, first, streamed) for each run
// of `rows` (for_each_run's arguments, and whether to stream the output), block by block, with a
// fence after each block whose output was streamed.
template <class T, class Run>
void for_each_output_run(const ChannelShape& view, const Rows& rows, const Run& run) {
    const bool streamed = streams(view, sizeof(T), rows);
    for_each_block(view, rows, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
        for_each_run(view, n0, n1, c0, c1, [&](auto per_element, auto runs, std::size_t off, std::size_t stride,
                                               std::size_t len, std::size_t first) {
            run(per_element, runs, off, stride, len, first, streamed);
        });
        if (streamed) stream_fence();
    });
}

}  // namespace normalization_detail

template <class T, class Epilogue>
void apply_forward(const ChannelShape& view, const Affine<T>& a, const Epilogue& epilogue, const T* x, T* y,
                   const Rows& rows) {
    using namespace normalization_detail;
    for_each_output_run<T>(view, rows, [&](auto per_element, auto runs, std::size_t off, std::size_t stride,
                                           std::size_t len, std::size_t first, bool streamed) {
        constexpr std::size_t step = decltype(per_element)::value ? 1 : 0;
        const AffineRun<T> co = a.from(first);
        const auto epi = epilogue.bind_run(per_element, first);
        const T* src = x + off;
        write_runs<decltype(runs)::value>(y + off, stride, len, streamed, [&](std::size_t i) {
            return [&, i, c = co.at(i * step)](std::size_t r) {
                return epi.forward(affine(src[r * stride + i], c[0], c[1], c[2]), i);
            };
        });
    });
}

// `forward` is the forward's coefficients, from which an epilogue whose derivative depends on its
// input recomputes it; null for an epilogue that does not (Epilogue::gate_reads_value false).
template <class T, class Epilogue>
void apply_backward(const ChannelShape& view, const InputGrad<T>& d, const Affine<T>* forward, const Epilogue& epilogue,
                    const T* dy, const T* x, T* dx, const Rows& rows) {
    using namespace normalization_detail;
    for_each_output_run<T>(view, rows, [&](auto per_element, auto runs, std::size_t off, std::size_t stride,
                                           std::size_t len, std::size_t first, bool streamed) {
        constexpr std::size_t step = decltype(per_element)::value ? 1 : 0;
        const T* al = d.alpha.from(first);
        const T* ce = d.centre.from(first);
        const T* kk = d.k.from(first);
        const T* sf = d.shift.from(first);
        const AffineRun<T> fw = Epilogue::gate_reads_value ? forward->from(first) : AffineRun<T>{};
        const auto epi = epilogue.bind_run(per_element, first);
        const T* g = dy + off;
        const T* src = x + off;
        // The forward's coefficients of element i for an epilogue whose gate recomputes its input;
        // zeros, unused, otherwise.
        const auto forward_at = [&](std::size_t i) {
            if constexpr (Epilogue::gate_reads_value) {
                return fw.at(i * step);
            } else {
                return std::array<T, 3>{};
            }
        };
        // The output gradient of element i of run r through the epilogue, f its forward_at(i).
        const auto gate = [&](std::size_t r, std::size_t i, const std::array<T, 3>& f) {
            const std::size_t at = r * stride + i;
            if constexpr (Epilogue::gate_reads_value) {
                return epi.gate(g[at], affine(src[at], f[0], f[1], f[2]), i);
            } else {
                return epi.gate(g[at], T(0), i);
            }
        };
        if (d.x_term) {
            write_runs<decltype(runs)::value>(dx + off, stride, len, streamed, [&](std::size_t i) {
                return [&, i, f = forward_at(i), a = al[i * step], c = ce[i * step], k = kk[i * step],
                        h = sf[i * step]](std::size_t r) {
                    return mul_add(gate(r, i, f), a, affine(src[r * stride + i], c, k, h));
                };
            });
        } else {
            // x read only for the epilogue's mask: a non-finite x cannot turn a gated 0 into a NaN.
            write_runs<decltype(runs)::value>(dx + off, stride, len, streamed, [&](std::size_t i) {
                return [&, i, f = forward_at(i), a = al[i * step]](std::size_t r) {
                    return affine(gate(r, i, f), T(0), a, T(0));
                };
            });
        }
    });
}

}  // namespace xgrad
