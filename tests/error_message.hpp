// The message of the exception a piece of code throws, for the tests of error messages.
#pragma once

#include <exception>
#include <string>

#include <gtest/gtest.h>

namespace xgrad_test {

// What `f` throws as E says; a test failure (and "") when it throws nothing.
template <class E = std::exception, class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    ADD_FAILURE() << "no exception";
    return "";
}

}  // namespace xgrad_test
