// One parallel pass over every element of every parameter, for optimizers, whose updates are
// elementwise: the tensors are cut into pieces of at most `piece_elements` and all pieces of all
// tensors run in one TBB loop (in the calling thread below parallel_pass_elements), so a model's
// many small tensors (its biases) do not each start a loop and its few large ones are split
// between threads. Each element is computed alone, so the bits do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <unordered_set>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace xgrad {

// Enough work per piece to outweigh a task (Adam moves 28 bytes an element in float: 448 KiB).
inline constexpr std::size_t piece_elements = 16384;
// A pass over fewer elements runs in the calling thread. A parallel loop leaves the worker it woke
// spinning, and the calling thread's next work runs slower beside it: paper-mlp's step at 2
// threads, whose parallel loops were SGD's pass over its 100k parameters (about 8 µs) and its
// sigmoid nodes (see fused_parallel_above, autodiff/fused_node.hpp), took 281 µs, and 246 µs,
// as at 1 thread, with both in the calling thread; either alone gained nothing (bench/RESULTS.md,
// "The paper-mlp step").
inline constexpr std::size_t parallel_pass_elements = std::size_t{1} << 18;

// body(update, begin, end) runs elements [begin, end) of one of `updates`, each of which has
// `size` (its elements) and `target` (the parameter's data). A tensor listed twice (tied weights:
// a layer registered twice lists its parameters twice) is updated once per listing, in list order,
// each listing in a pass of its own, so that no two pieces of one pass write the same memory.
template <class Update, class Body>
void for_each_parameter_piece(const std::vector<Update>& updates, const Body& body) {
    struct Piece {
        const Update* update;
        std::size_t begin, end;
    };
    std::vector<const Update*> pending;
    for (const Update& u : updates) {
        if (u.size > 0) pending.push_back(&u);
    }
    while (!pending.empty()) {
        std::vector<Piece> pieces;
        std::vector<const Update*> later;
        std::unordered_set<const void*> in_this_pass;
        std::size_t elements = 0;
        for (const Update* u : pending) {
            if (!in_this_pass.insert(u->target).second) {
                later.push_back(u);
                continue;
            }
            elements += u->size;
            for (std::size_t begin = 0; begin < u->size; begin += piece_elements) {
                pieces.push_back({u, begin, std::min(u->size, begin + piece_elements)});
            }
        }
        const auto run = [&](const tbb::blocked_range<std::size_t>& r) {
            for (std::size_t i = r.begin(); i != r.end(); ++i) body(*pieces[i].update, pieces[i].begin, pieces[i].end);
        };
        const tbb::blocked_range<std::size_t> all(0, pieces.size(), 1);
        if (elements < parallel_pass_elements) {
            run(all);
        } else {
            tbb::parallel_for(all, run);
        }
        pending = std::move(later);
    }
}

}  // namespace xgrad
