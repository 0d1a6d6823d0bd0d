// The test programs' precompiled header (pch/meson.build): the library's, with GoogleTest and
// rapidcheck, which every suite includes.
#include "xgrad_pch.hpp"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
