// Everything of the autodiff library in one include.
#pragma once

#include "autodiff/backward.hpp"
#include "autodiff/elementwise_ops.hpp"
#include "autodiff/grad_mode.hpp"
#include "autodiff/gradcheck.hpp"
#include "autodiff/log_softmax.hpp"
#include "autodiff/matmul.hpp"
#include "autodiff/memory.hpp"
#include "autodiff/reductions.hpp"
#include "autodiff/shape_ops.hpp"
#include "autodiff/var.hpp"
