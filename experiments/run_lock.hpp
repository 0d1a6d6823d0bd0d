// A process's exclusive claim on a run directory for as long as it trains there, so that two
// trainers started into the same --out cannot write over each other's files: a flock on
// <dir>/run.lock, a file holding the process id of the trainer that took it last, for the error
// the next one gets. The kernel drops the lock when the process ends, killed or not, so the file
// left behind never blocks a later run.
#pragma once

#include <filesystem>

namespace xgrad {

class RunLock {
public:
    // Takes the lock on the existing directory `dir`; a std::runtime_error naming the directory
    // and the process that holds it when another has it.
    explicit RunLock(const std::filesystem::path& dir);
    ~RunLock();  // closing the descriptor releases the lock
    RunLock(const RunLock&) = delete;
    RunLock& operator=(const RunLock&) = delete;

private:
    int fd_;
};

}  // namespace xgrad
