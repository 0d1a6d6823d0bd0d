#include "experiments/plot.hpp"

#include <cstdlib>
#include <stdexcept>

namespace xgrad {

namespace {

// Single-quoted for the shell: every ' becomes '\''.
std::string quoted(const std::string& s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') q.append("'\\''");
        else q.push_back(c);
    }
    q.push_back('\'');
    return q;
}

}  // namespace

void plot_test_accuracy(const std::vector<PlotSeries>& series, const std::filesystem::path& png, const std::string& title) {
    // Built by appending: GCC 12 misreports `"literal" + std::string` under -Wrestrict.
    std::string command = "/usr/bin/python3";
    for (const std::string& arg : {quoted(XGRAD_SOURCE_DIR "/experiments/plot.py"), std::string("--out"),
                                   quoted(png.string()), std::string("--title"), quoted(title)}) {
        command.append(" ").append(arg);
    }
    for (const auto& s : series) command.append(" ").append(quoted(s.label + "=" + s.metrics_csv.string()));
    if (std::system(command.c_str()) != 0) throw std::runtime_error("plotting failed: " + command);
}

}  // namespace xgrad
