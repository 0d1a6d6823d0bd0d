// Batch Renorm's limits (Ioffe 2017): r is clipped to [1/rmax, rmax] and d to [-dmax, dmax]
// (fold.hpp's renorm_correction). Apart from the stages so that a layer's interface can name them
// without the stages' headers.
#pragma once

namespace xgrad {

struct RenormLimits {
    double rmax;
    double dmax;
};

}  // namespace xgrad
