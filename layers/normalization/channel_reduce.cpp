#include "layers/normalization/channel_reduce.hpp"

namespace xgrad {

template <class T>
std::vector<double> channel_sum(const T* x, const ChannelShape& shape) {
    const auto sums = channel_sums<1>(shape, [x](std::size_t, std::size_t i) {
        return std::array<double, 1>{static_cast<double>(x[i])};
    });
    std::vector<double> out(sums.size());
    for (std::size_t c = 0; c < sums.size(); ++c) out[c] = sums[c][0];
    return out;
}

template std::vector<double> channel_sum(const float*, const ChannelShape&);
template std::vector<double> channel_sum(const double*, const ChannelShape&);

}  // namespace xgrad
