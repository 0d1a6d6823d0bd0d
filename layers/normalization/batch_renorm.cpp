#include "layers/normalization/batch_renorm.hpp"

#include <cmath>
#include <stdexcept>

#include "layers/python_repr.hpp"

namespace xgrad {

namespace {

// start before `from`, final from `until` on, linear between.
double relaxed(double start, double final, std::int64_t from, std::int64_t until, std::int64_t step) {
    if (step >= until) return final;
    if (step < from) return start;
    return start + (final - start) * static_cast<double>(step - from) / static_cast<double>(until - from);
}

}  // namespace

RenormLimits RenormSchedule::at(std::int64_t step) const {
    return {relaxed(rmax_start, rmax_final, relax_from, rmax_final_at, step),
            relaxed(dmax_start, dmax_final, relax_from, dmax_final_at, step)};
}

void RenormSchedule::check(const std::string& where) const {
    const auto fail = [&](const std::string& what) {
        throw std::invalid_argument(where + ": renorm schedule: expected " + what);
    };
    for (const double rmax : {rmax_start, rmax_final}) {
        if (!(rmax >= 1.0) || !std::isfinite(rmax)) fail("finite rmax >= 1, got " + python_float(rmax));
    }
    for (const double dmax : {dmax_start, dmax_final}) {
        if (!(dmax >= 0.0) || !std::isfinite(dmax)) fail("finite dmax >= 0, got " + python_float(dmax));
    }
    if (relax_from < 0) fail("relax_from >= 0, got " + std::to_string(relax_from));
    for (const std::int64_t until : {rmax_final_at, dmax_final_at}) {
        if (until < relax_from) {
            fail("final steps at or after relax_from = " + std::to_string(relax_from) + ", got " +
                 std::to_string(until));
        }
    }
}

template <class T>
BatchRenorm<T>::BatchRenorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                            std::size_t num_features, const BatchRenormOptions& options)
    : BatchNorm<T>(kind, ranks, layout, num_features,
                   BatchNormOptions{.eps = options.eps, .momentum = options.momentum, .affine = options.affine,
                                    .track_running_stats = true}),
      schedule_(options.schedule) {
    schedule_.check(kind);
}

template <class T>
std::string BatchRenorm<T>::describe() const {
    const BatchNormOptions& o = this->options();
    const RenormSchedule& s = schedule_;
    const auto steps = [&](std::int64_t until) {
        return " over steps " + std::to_string(s.relax_from) + "-" + std::to_string(until);
    };
    return std::string(this->kind()) + "(" + std::to_string(this->num_features()) + ", eps=" + python_float(o.eps) +
           ", momentum=" + (o.momentum ? python_float(*o.momentum) : "None") + ", affine=" + python_bool(o.affine) +
           ", rmax=" + python_float(s.rmax_start) + "->" + python_float(s.rmax_final) + steps(s.rmax_final_at) +
           ", dmax=" + python_float(s.dmax_start) + "->" + python_float(s.dmax_final) + steps(s.dmax_final_at) + ")";
}

template class BatchRenorm<float>;
template class BatchRenorm<double>;

}  // namespace xgrad
