// Reading a whole input file into memory, refusing anything but a regular file: a device such as
// /dev/zero never ends and a FIFO blocks until a writer comes, so neither may reach a parser. The
// bytes read are the bound every header claim is checked against before anything is allocated.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>

namespace xgrad {

// A file that cannot be read: "cannot read <path>: <reason>", the reason being the system's ("No
// such file or directory") or "not a regular file (a character device)" and the like.
class UnreadableFile : public std::runtime_error {
public:
    UnreadableFile(const std::filesystem::path& path, std::string reason)
        : std::runtime_error("cannot read " + path.string() + ": " + reason), reason_(std::move(reason)) {}
    const std::string& reason() const { return reason_; }

private:
    std::string reason_;
};

// The file's bytes; an UnreadableFile if it is not a regular file or cannot be read.
std::string read_regular_file(const std::filesystem::path& path);

}  // namespace xgrad
