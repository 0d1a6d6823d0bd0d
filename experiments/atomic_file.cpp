#include "experiments/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace xgrad {
namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what, int error) {
    throw std::runtime_error("cannot write '" + path.string() + "': " + what + ": " + std::strerror(error));
}

// Closes the descriptor and, unless released, removes the temporary it was writing.
class TempFile {
public:
    TempFile(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    ~TempFile() {
        if (fd_ >= 0) ::close(fd_);
        if (!released_) ::unlink(path_.c_str());
    }
    int fd() const { return fd_; }
    // Closes now, so a failing close (a delayed write error) is seen.
    int close() {
        const int rc = ::close(fd_);
        fd_ = -1;
        return rc;
    }
    void release() { released_ = true; }

private:
    std::filesystem::path path_;
    int fd_;
    bool released_ = false;
};

void write_all(const std::filesystem::path& path, int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            fail(path, "write", errno);
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

void sync_directory(const std::filesystem::path& path) {
    std::filesystem::path dir = path.parent_path();
    if (dir.empty()) dir = ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(path, "open directory '" + dir.string() + "'", errno);
    const int rc = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    if (rc != 0) fail(path, "fsync directory '" + dir.string() + "'", error);
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail(path, "create '" + tmp.string() + "'", errno);
    TempFile file(tmp, fd);
    write_all(path, file.fd(), bytes);
    if (::fsync(file.fd()) != 0) fail(path, "fsync '" + tmp.string() + "'", errno);
    if (file.close() != 0) fail(path, "close '" + tmp.string() + "'", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail(path, "rename '" + tmp.string() + "'", errno);
    file.release();
    sync_directory(path);
}

}  // namespace xgrad
