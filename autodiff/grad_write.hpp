// An input's gradient as a kernel that overwrites its output writes it. Whether an op's gradient
// is written or added is decided in one place, prepare_grad_buffer: a node without a live gradient
// gets the kernel's output straight in its buffer (kept across zero_grad, so no allocation); a node
// that already holds one gets a scratch that commit() adds in. Kernels that can add themselves (a
// gemm's beta) call prepare_grad_buffer directly.
#pragma once

#include <memory>

#include <xtensor/xarray.hpp>
#include <xtensor/xnoalias.hpp>

#include "autodiff/node.hpp"

namespace xgrad {

template <class T>
class GradWrite {
public:
    // A null node, or one that needs no gradient, gives a null data(): not wanted.
    explicit GradWrite(const std::shared_ptr<Node<T>>& node) {
        if (!node || !node->requires_grad) return;
        node_ = node.get();
        if (prepare_grad_buffer(*node_)) {
            scratch_ = xt::xarray<T>::from_shape(node_->value.shape());
            data_ = scratch_.data();
        } else {
            data_ = node_->grad.data();
        }
    }
    GradWrite(const GradWrite&) = delete;
    GradWrite& operator=(const GradWrite&) = delete;

    T* data() const { return data_; }

    // Adds the scratch to the gradient the node held; nothing when the kernel wrote in place.
    void commit() {
        if (node_ && data_ == scratch_.data()) xt::noalias(node_->grad) += scratch_;
    }

private:
    Node<T>* node_ = nullptr;
    xt::xarray<T> scratch_;
    T* data_ = nullptr;
};

}  // namespace xgrad
