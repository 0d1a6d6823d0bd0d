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

std::string verdict_equivalent(const Spread& a, const Spread& b, double margin) {
    const std::string one = verdict_within(a, b, margin), other = verdict_within(b, a, margin);
    for (const char* weakest : {"not reproduced", "partly"}) {
        if (one == weakest || other == weakest) return weakest;
    }
    return "reproduced";
}

std::string equivalence_rule(const std::string& a, const std::string& b, const std::string& margin) {
    char level[16];
    std::snprintf(level, sizeof level, "%g", significance_level);
    return "reproduced when " + a + " is below " + b + " plus " + margin + " and " + b + " below " + a + " plus " + margin +
           ", each by Welch's one-sided t-test at p < " + level + " (the two one-sided tests of equivalence); partly when "
           "both means are inside those bounds at all; else not reproduced";
}

std::string equivalence_note(const Spread& a, const Spread& b, double margin, const std::string& margin_words) {
    return within_note(a, b, margin, margin_words) + " (one way), " + format_p(welch_greater(bound_of(a, margin), b).p) +
           " (the other)";
}

}  // namespace xgrad
