#include "autodiff/grad_mode.hpp"

namespace xgrad {

namespace {
thread_local bool enabled = true;
}

bool grad_enabled() { return enabled; }

NoGrad::NoGrad() : previous_(enabled) { enabled = false; }
NoGrad::~NoGrad() { enabled = previous_; }

}  // namespace xgrad
