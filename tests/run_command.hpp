// Running a shell command from the tests of the xgrad command line: its exit status and everything
// it printed (stdout and stderr), so that a test can check an error message as well as a result.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>

namespace xgrad_test {

struct CommandResult {
    int status = 0;  // as pclose returns it: 0 for success
    std::string output;
};

inline CommandResult run_command(const std::string& command) {
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    if (!pipe) throw std::runtime_error("cannot run " + command);
    CommandResult result;
    char buf[512];
    while (fgets(buf, sizeof buf, pipe)) result.output += buf;
    result.status = pclose(pipe);
    return result;
}

}  // namespace xgrad_test
