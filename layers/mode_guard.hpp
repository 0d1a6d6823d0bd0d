// Puts a module back in the training or eval mode it had, however the scope ends: for the
// measurements that run a model in eval mode in the middle of training.
#pragma once

#include "layers/module.hpp"

namespace xgrad {

template <class T>
class ModeGuard {
public:
    explicit ModeGuard(Module<T>& model) : model_(model), was_training_(model.is_training()) {}
    ~ModeGuard() { model_.train(was_training_); }
    ModeGuard(const ModeGuard&) = delete;
    ModeGuard& operator=(const ModeGuard&) = delete;

private:
    Module<T>& model_;
    bool was_training_;
};

}  // namespace xgrad
