#include "experiments/equivalence.hpp"

#include <cstdio>

#include "experiments/experiment.hpp"

namespace xgrad {

namespace {

// b with the margin added to every figure: the bound a must stay below.
Spread bound_of(const Spread& b, double margin) {
    Spread bound = b;
    bound.mean += margin;
    bound.min += margin;
    bound.max += margin;
    return bound;
}

}  // namespace

std::string verdict_within(const Spread& a, const Spread& b, double margin) { return verdict_greater(bound_of(b, margin), a); }

std::string within_rule(const std::string& a, const std::string& b, const std::string& margin) {
    char level[16];
    std::snprintf(level, sizeof level, "%g", significance_level);
    return "reproduced when " + a + " is below " + b + " plus " + margin +
           " (an equivalence bound) by Welch's one-sided t-test at p < " + level +
           "; partly when its mean is below that bound at all";
}

std::string within_note(const Spread& a, const Spread& b, double margin, const std::string& margin_words) {
    return welch_note(bound_of(b, margin), a) + " for a difference below " + margin_words;
}

}  // namespace xgrad
