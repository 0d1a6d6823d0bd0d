// Speed as the papers measure it: the steps a run needs to reach a target test accuracy, over
// seeds, and the test that one arm needs fewer steps than another. A run that never reaches the
// target (or diverges) took infinitely many: the exact Mann–Whitney U test ranks such runs last
// where a mean would be infinite, so the comparison still says something.
#pragma once

#include <string>
#include <vector>

#include "experiments/experiment.hpp"

namespace xgrad {

// The first evaluated step at which the run's test accuracy reached `target`; +infinity when it
// never did or diverged.
double steps_to_target(const RunResult& run, double target);
// Per run, the first evaluated step at which its test accuracy reached `target`; +infinity for a
// run that never did or that diverged.
std::vector<double> steps_to_target(const std::vector<const RunResult*>& runs, double target);

// The mean (infinite when any run is) and the median (infinite when half the runs are or more).
double mean_steps(const std::vector<double>& steps);
double median_steps(std::vector<double> steps);

// "1500" or "never".
std::string format_step_count(double steps);
// "median 1500 (n=5, 1000..2000)", the upper end "never" when a run did not reach the target.
std::string format_steps(const std::vector<double>& steps);

// The verdict for "a needs fewer steps than b": reproduced when the exact one-sided Mann–Whitney U
// test finds b's steps larger at p < significance_level; partly when a's median is lower at all;
// else not reproduced.
std::string verdict_fewer_steps(const std::vector<double>& a, const std::vector<double>& b);
// That rule in words for Claim::rule, with the two sides named.
std::string fewer_steps_rule(const std::string& a, const std::string& b);
// The p-value behind verdict_fewer_steps(a, b): "Mann–Whitney p = 0.004".
std::string mann_whitney_note(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace xgrad
