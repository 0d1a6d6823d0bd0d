// The valid range of a numeric setting, as its flag states it in an error ("--epochs: expected a
// whole number from 1 to 1000000; got -1"). The command line checks a flag's text against it before
// converting (so that -1 never wraps around in an unsigned option), and check_train_config checks a
// configuration's values against the same range, so both say the same words.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

#include "layers/python_repr.hpp"

namespace xgrad {

// "--flag: expected <expected>; got <given>".
[[noreturn]] inline void reject_flag(const std::string& flag, const std::string& expected, const std::string& given) {
    throw std::invalid_argument(flag + ": expected " + expected + "; got " + given);
}

// Whole numbers from `min` to `max`. Without a max, the bound is another check's (the layer's
// channels for --norm-groups, --batch for --ghost-batch).
struct WholeRange {
    std::int64_t min;
    std::optional<std::int64_t> max;

    static constexpr WholeRange at_least(std::int64_t min) { return {min, std::nullopt}; }

    bool contains(std::int64_t n) const { return n >= min && (!max || n <= *max); }

    std::string words() const {
        if (!max) return "a whole number >= " + std::to_string(min);
        return "a whole number from " + std::to_string(min) + " to " + std::to_string(*max);
    }

    // Whether `text` spells a whole number in the range (one too large for std::int64_t is not).
    // Decimal only: CLI11 would read a leading 0 as octal ("010" as 8), so it is not admitted.
    bool admits(const std::string& text) const {
        const std::size_t digits_from = !text.empty() && text[0] == '-' ? 1 : 0;
        if (text.size() > digits_from + 1 && text[digits_from] == '0') return false;
        std::int64_t n = 0;
        const char* end = text.data() + text.size();
        const auto [stop, error] = std::from_chars(text.data(), end, n);
        return error == std::errc{} && stop == end && contains(n);
    }

    void check(const std::string& flag, std::uint64_t n) const {
        const bool fits = n <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (!fits || !contains(static_cast<std::int64_t>(n))) reject_flag(flag, words(), std::to_string(n));
    }
};

// Finite real numbers above `low` (or at it, when included) and below `high` (or at it); without
// a high, any finite number above low.
struct RealRange {
    double low;
    bool low_included;
    std::optional<double> high;
    bool high_included;

    static constexpr RealRange above(double low) { return {low, false, std::nullopt, false}; }
    static constexpr RealRange at_least(double low) { return {low, true, std::nullopt, false}; }
    static constexpr RealRange closed_open(double low, double high) { return {low, true, high, false}; }  // [low, high)
    static constexpr RealRange open_closed(double low, double high) { return {low, false, high, true}; }  // (low, high]

    bool contains(double x) const {
        if (!std::isfinite(x) || (low_included ? x < low : x <= low)) return false;
        return !high || (high_included ? x <= *high : x < *high);
    }

    std::string words() const {
        if (!high) return std::string("a finite number ") + (low_included ? ">= " : "> ") + python_float(low);
        return std::string("a number in ") + (low_included ? "[" : "(") + python_float(low) + ", " + python_float(*high) +
               (high_included ? "]" : ")");
    }

    // Whether `text` spells a number in the range.
    bool admits(const std::string& text) const {
        double x = 0;
        const char* end = text.data() + text.size();
        const auto [stop, error] = std::from_chars(text.data(), end, x);
        return error == std::errc{} && stop == end && contains(x);
    }

    void check(const std::string& flag, double x) const {
        if (!contains(x)) reject_flag(flag, words(), python_float(x));
    }
};

}  // namespace xgrad
