// The progress of a long run: on a terminal, one line redrawn in place (step, loss, accuracy,
// rate, ETA); elsewhere (a log file, CI), a plain line per report so logs stay readable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace xgrad {

class Progress {
public:
    // `total` steps; `label` starts every line (e.g. the run's name). A null `out` prints nothing
    // (the other ranks of a data-parallel run, whose lines rank 0 prints).
    Progress(std::string label, std::size_t total, std::size_t first_step = 0, std::FILE* out = stderr);

    // Redraws the terminal line (at most ~10 times a second).
    void update(std::size_t step, double loss, double accuracy);
    // A line that stays: on a terminal it replaces the progress line, which is drawn again below it.
    void report(const std::string& line);
    // Ends the terminal line.
    void finish();

private:
    std::string status(std::size_t step, double loss, double accuracy) const;

    std::string label_;
    std::size_t total_;
    std::size_t first_step_;
    std::FILE* out_;
    bool terminal_;
    std::chrono::steady_clock::time_point start_;
    std::chrono::steady_clock::time_point last_draw_;
    std::string last_status_;
};

}  // namespace xgrad
