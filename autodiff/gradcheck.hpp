// Gradient checking by central finite differences, in double precision.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "autodiff/var.hpp"

namespace xgrad {

// The worst error found for one input, and where.
struct GradcheckResult {
    double worst_error = 0.0;   // max over elements of |analytic - numeric| / max(1, |analytic|, |numeric|)
    std::size_t worst_index = 0;  // flat index of that element
    double analytic = 0.0;
    double numeric = 0.0;
};

// Checks f at `inputs`: projects f's output on fixed pseudo-random weights r (so every output
// element is checked at once), backpropagates to get the analytic gradient of <r, f(x)>, and
// compares each input element against (f(x + h e_j) - f(x - h e_j)) . r / 2h with
// h = cbrt(machine epsilon) * max(1, |x_j|). Inputs are left as given; their grads are reset.
std::vector<GradcheckResult> gradcheck(const std::function<Var<double>(const std::vector<Var<double>>&)>& f,
                                       const std::vector<Var<double>>& inputs);

}  // namespace xgrad
