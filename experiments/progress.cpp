#include "experiments/progress.hpp"

#include <unistd.h>

#include <cmath>

namespace xgrad {

namespace {

std::string clock_time(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "--:--";
    const long s = std::lround(seconds);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

}  // namespace

Progress::Progress(std::string label, std::size_t total, std::size_t first_step, std::FILE* out)
    : label_(std::move(label)), total_(total), first_step_(first_step), out_(out),
      terminal_(out != nullptr && isatty(fileno(out)) != 0), start_(std::chrono::steady_clock::now()), last_draw_() {}

std::string Progress::status(std::size_t step, double loss, double accuracy) const {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(step - first_step_) / elapsed : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - step) / rate : NAN;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s step %zu/%zu  loss %.4f  acc %.4f  %.1f steps/s  ETA %s", label_.c_str(), step,
                  total_, loss, accuracy, rate, clock_time(eta).c_str());
    return buf;
}

void Progress::update(std::size_t step, double loss, double accuracy) {
    if (!terminal_) return;
    const auto now = std::chrono::steady_clock::now();
    if (step != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    last_status_ = status(step, loss, accuracy);
    std::fprintf(out_, "\r\033[K%s", last_status_.c_str());
    std::fflush(out_);
}

void Progress::report(const std::string& line) {
    if (!out_) return;
    if (terminal_) {
        std::fprintf(out_, "\r\033[K%s\n%s", line.c_str(), last_status_.c_str());
    } else {
        std::fprintf(out_, "%s\n", line.c_str());
    }
    std::fflush(out_);
}

void Progress::finish() {
    if (!out_) return;
    if (terminal_ && !last_status_.empty()) std::fprintf(out_, "\n");
    std::fflush(out_);
}

}  // namespace xgrad
