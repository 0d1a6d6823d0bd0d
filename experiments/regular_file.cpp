#include "experiments/regular_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace xgrad {
namespace {

std::string kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    return "of an unknown kind";
}

// Closes the descriptor however the read ends.
class Descriptor {
public:
    explicit Descriptor(int fd) : fd_(fd) {}
    ~Descriptor() { ::close(fd_); }
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

[[noreturn]] void cannot_read(const std::filesystem::path& path, const std::string& reason) {
    throw UnreadableFile(path, reason);
}

}  // namespace

std::string read_regular_file(const std::filesystem::path& path) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) cannot_read(path, std::strerror(errno));
    const Descriptor file(fd);
    struct stat status {};
    if (::fstat(file.get(), &status) != 0) cannot_read(path, std::strerror(errno));
    if (!S_ISREG(status.st_mode)) cannot_read(path, "not a regular file (" + kind_of(status.st_mode) + ")");

    // The size fstat gave, then a small probe for the end: a file that changes meanwhile is read
    // as it is, without reserving more than it holds.
    std::string bytes(static_cast<std::size_t>(status.st_size), '\0');
    std::size_t done = 0;
    char probe[4096];
    for (;;) {
        const bool in_place = done < bytes.size();
        const ssize_t n = in_place ? ::read(file.get(), bytes.data() + done, bytes.size() - done)
                                   : ::read(file.get(), probe, sizeof probe);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            cannot_read(path, std::strerror(errno));
        }
        if (!in_place) bytes.append(probe, static_cast<std::size_t>(n));
        done += static_cast<std::size_t>(n);
    }
    bytes.resize(done);
    return bytes;
}

}  // namespace xgrad
