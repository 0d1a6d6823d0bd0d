// The .npz reader (experiments/npz.hpp) with entry CRCs unchecked, so that mutated entries reach
// the .npy parser. Bad input must be an NpzError; what parses must be written back by npz_bytes
// and read again as the same arrays, bit for bit.
#include <cstring>
#include <variant>

#include "experiments/npz.hpp"
#include "fuzz/harness.hpp"

namespace {

bool same_bits(const xgrad::NpyArray& a, const xgrad::NpyArray& b) {
    if (a.index() != b.index()) return false;
    return std::visit(
        [&b](const auto& x) {
            const auto& y = std::get<std::decay_t<decltype(x)>>(b);
            return x.shape() == y.shape() &&
                   (x.size() == 0 || std::memcmp(x.data(), y.data(), x.size() * sizeof(*x.data())) == 0);
        },
        a);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    xgrad::Npz npz;
    try {
        npz = xgrad::parse_npz(xgrad_fuzz::input_bytes(data, size), "fuzz.npz", xgrad::NpzCrc::skip);
    } catch (const xgrad::NpzError&) {
        return 0;
    }
    const xgrad::Npz again = xgrad::parse_npz(xgrad::npz_bytes(npz), "rewritten.npz");
    if (again.entries().size() != npz.entries().size()) xgrad_fuzz::property_failed("rewriting changed the entries");
    for (std::size_t i = 0; i < npz.entries().size(); ++i) {
        const auto& [name, array] = npz.entries()[i];
        if (again.entries()[i].first != name || !same_bits(again.entries()[i].second, array)) {
            xgrad_fuzz::property_failed("rewriting changed an array");
        }
    }
    return 0;
}
