// Whether operations record the graph: on by default, off inside a NoGrad scope (per thread).
#pragma once

namespace xgrad {

bool grad_enabled();

// RAII scope in which no operation records a graph node (evaluation, optimizer updates).
class NoGrad {
public:
    NoGrad();
    ~NoGrad();
    NoGrad(const NoGrad&) = delete;
    NoGrad& operator=(const NoGrad&) = delete;

private:
    bool previous_;
};

}  // namespace xgrad
