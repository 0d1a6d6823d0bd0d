// The verdict for claims that a figure does not exceed another by more than a margin (GN's error at
// a small batch against its error at a large one; PreciseBN's accuracy against the running
// statistics'): a one-sided equivalence bound, the upper half of the two one-sided tests; and both
// halves, for claims that two figures are the same within a margin.
#pragma once

#include <string>

#include "experiments/statistics.hpp"

namespace xgrad {

// reproduced when Welch's one-sided t-test puts a's mean below b's mean + margin at p <
// significance_level; partly when a's mean is below that bound at all; else not reproduced.
std::string verdict_within(const Spread& a, const Spread& b, double margin);

// verdict_within's rule in words, the margin as given: "reproduced when <a> is below <b> plus
// <margin> (an equivalence bound) by Welch's one-sided t-test at p < 0.05; partly when its mean
// is below that bound at all".
std::string within_rule(const std::string& a, const std::string& b, const std::string& margin);

// The p-value behind verdict_within: "Welch p = 0.004 for a difference below <margin>".
std::string within_note(const Spread& a, const Spread& b, double margin, const std::string& margin_words);

// The two-sided version, for claims that two figures are the same within a margin (the two one-
// sided tests): verdict_within both ways, the weaker of the two verdicts.
std::string verdict_equivalent(const Spread& a, const Spread& b, double margin);
// Its rule in words.
std::string equivalence_rule(const std::string& a, const std::string& b, const std::string& margin);
// Both p-values: "Welch p = 0.004 for a below b + 1 point, p = 0.010 for b below a + 1 point".
std::string equivalence_note(const Spread& a, const Spread& b, double margin, const std::string& margin_words);

}  // namespace xgrad
