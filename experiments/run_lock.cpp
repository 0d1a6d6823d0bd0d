#include "experiments/run_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

namespace xgrad {

namespace {

// The process id the holder wrote into the lock file. A holder writes it right after taking the
// lock, so an empty file is read again for a moment before giving up.
std::string holder_of(int fd) {
    for (int attempt = 0; attempt < 100; ++attempt) {
        char text[32] = {};
        const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
        if (n > 0) return "process " + std::string(text, static_cast<std::size_t>(n));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return "another process";
}

}  // namespace

RunLock::RunLock(const std::filesystem::path& dir) {
    const std::filesystem::path path = dir / "run.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open the lock file '" + path.string() + "': " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        const std::string message = error == EWOULDBLOCK
                                        ? "run directory '" + dir.string() + "' is in use by " + holder_of(fd_) +
                                              " (it holds " + path.string() + "); wait for it or choose another --out"
                                        : "cannot lock '" + path.string() + "': " + std::strerror(error);
        ::close(fd_);
        throw std::runtime_error(message);
    }
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        const int error = errno;
        ::close(fd_);
        throw std::runtime_error("cannot write '" + path.string() + "': " + std::strerror(error));
    }
}

RunLock::~RunLock() { ::close(fd_); }

}  // namespace xgrad
