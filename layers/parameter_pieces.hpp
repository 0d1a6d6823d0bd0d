// One parallel pass over every element of every parameter, for optimizers, whose updates are
// elementwise: the tensors are cut into pieces of at most `piece_elements` and all pieces of all
// tensors run in one TBB loop, so a model's many small tensors (its biases) do not each start a
// loop and its few large ones are split between threads. Each element is computed alone, so the
// bits do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace xgrad {

// Enough work per piece to outweigh a task (Adam moves 28 bytes an element in float: 448 KiB).
inline constexpr std::size_t piece_elements = 16384;

// body(k, begin, end) updates elements [begin, end) of tensor k; sizes[k] is tensor k's size.
template <class Body>
void for_each_parameter_piece(const std::vector<std::size_t>& sizes, const Body& body) {
    struct Piece {
        std::size_t tensor, begin, end;
    };
    std::vector<Piece> pieces;
    for (std::size_t k = 0; k < sizes.size(); ++k) {
        for (std::size_t begin = 0; begin < sizes[k]; begin += piece_elements) {
            pieces.push_back({k, begin, std::min(sizes[k], begin + piece_elements)});
        }
    }
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, pieces.size(), 1), [&](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t i = r.begin(); i != r.end(); ++i) body(pieces[i].tensor, pieces[i].begin, pieces[i].end);
    });
}

}  // namespace xgrad
