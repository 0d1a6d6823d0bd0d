// The running statistics of Welford's algorithm and Chan et al.'s merge of two of them, for the
// welford and chunked_welford statistics: (count, mean, M2 = Σ(x - mean)²) never subtracts two
// large sums, so a large mean costs no precision as E[x²] - mean² does.
#pragma once

#include <cstddef>

namespace bn_variants::detail {

template <class Acc>
struct Welford {
    std::size_t count = 0;
    Acc mean = 0;
    Acc m2 = 0;

    // Welford's update with one more value.
    void push(Acc x) {
        ++count;
        const Acc d = x - mean;
        mean += d / static_cast<Acc>(count);
        m2 += d * (x - mean);
    }

    // Chan et al.: the statistics of the union of two disjoint parts, `o` being the later one.
    // Merging into the empty state copies o exactly, so partials may start empty.
    void merge(const Welford& o) {
        if (o.count == 0) return;
        const std::size_t n = count + o.count;
        const Acc delta = o.mean - mean;
        const Acc share = static_cast<Acc>(o.count) / static_cast<Acc>(n);
        mean += delta * share;
        m2 += o.m2 + delta * delta * static_cast<Acc>(count) * share;
        count = n;
    }
};

// The states of `lanes` lanes that each saw `count` values (mean[l], m2[l]), merged lane by lane.
template <class Acc>
Welford<Acc> merge_lanes(std::size_t count, const Acc* mean, const Acc* m2, std::size_t lanes) {
    Welford<Acc> s;
    for (std::size_t l = 0; l < lanes; ++l) s.merge(Welford<Acc>{count, mean[l], m2[l]});
    return s;
}

}  // namespace bn_variants::detail
