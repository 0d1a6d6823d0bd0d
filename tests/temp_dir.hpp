// A test fixture with a fresh temporary directory, removed after the test: for the tests that
// write the files they read.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace xgrad_test {

class TempDir : public ::testing::Test {
protected:
    void SetUp() override {
        // mkdtemp replaces the six X of its template with a unique suffix.
        std::string pattern = (std::filesystem::temp_directory_path() / "xgrad-test-XXXXXX").string();
        ASSERT_NE(mkdtemp(pattern.data()), nullptr);
        dir = pattern;
    }
    void TearDown() override { std::filesystem::remove_all(dir); }
    std::filesystem::path path(const std::string& name) const { return dir / name; }

    std::filesystem::path dir;
};

}  // namespace xgrad_test
