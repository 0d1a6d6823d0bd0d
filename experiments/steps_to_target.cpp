#include "experiments/steps_to_target.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

namespace xgrad {

double steps_to_target(const RunResult& run, double target) {
    const auto reached = steps_to_reach(run, target);
    return reached && !run.diverged() ? static_cast<double>(*reached) : std::numeric_limits<double>::infinity();
}

std::vector<double> steps_to_target(const std::vector<const RunResult*>& runs, double target) {
    return each(runs, [target](const RunResult& r) { return steps_to_target(r, target); });
}

double mean_steps(const std::vector<double>& steps) {
    if (steps.empty()) return std::numeric_limits<double>::infinity();
    return std::accumulate(steps.begin(), steps.end(), 0.0) / static_cast<double>(steps.size());
}

double median_steps(std::vector<double> steps) {
    if (steps.empty()) return std::numeric_limits<double>::infinity();
    std::sort(steps.begin(), steps.end());
    const std::size_t half = steps.size() / 2;
    return steps.size() % 2 ? steps[half] : (steps[half - 1] + steps[half]) / 2;
}

std::string format_step_count(double steps) {
    if (!std::isfinite(steps)) return "never";
    char text[32];
    std::snprintf(text, sizeof text, "%.0f", steps);
    return text;
}

std::string format_steps(const std::vector<double>& steps) {
    if (steps.empty()) return "-";
    const auto [lo, hi] = std::minmax_element(steps.begin(), steps.end());
    return "median " + format_step_count(median_steps(steps)) + " (n=" + std::to_string(steps.size()) + ", " +
           format_step_count(*lo) + ".." + format_step_count(*hi) + ")";
}

std::string verdict_fewer_steps(const std::vector<double>& a, const std::vector<double>& b) {
    if (mann_whitney_greater(b, a) < significance_level) return "reproduced";
    if (median_steps(a) < median_steps(b)) return "partly";
    return "not reproduced";
}

std::string fewer_steps_rule(const std::string& a, const std::string& b) {
    char level[16];
    std::snprintf(level, sizeof level, "%g", significance_level);
    return "reproduced when the exact one-sided Mann–Whitney U test finds " + b + " needing more steps to the target than " +
           a + " at p < " + level + " (a run that never reaches the target, or diverges, ranks last); partly when the " +
           "median steps of " + a + " are fewer at all";
}

std::string mann_whitney_note(const std::vector<double>& a, const std::vector<double>& b) {
    return "Mann–Whitney " + format_p(mann_whitney_greater(b, a));
}

}  // namespace xgrad
