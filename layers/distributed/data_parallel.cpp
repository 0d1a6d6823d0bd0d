#include "layers/distributed/data_parallel.hpp"

#include <algorithm>
#include <cstring>
#include <span>
#include <stdexcept>

namespace xgrad {

namespace {

template <class T>
std::span<std::byte> bytes_of(xt::xarray<T>& a) {
    return std::as_writable_bytes(std::span(a.data(), a.size()));
}

}  // namespace

template <class T>
DataParallel<T>::DataParallel(Module<T>& model, std::shared_ptr<Communicator> communicator, std::size_t bucket_bytes)
    : model_(model), communicator_(std::move(communicator)) {
    if (!communicator_) throw std::invalid_argument("DataParallel: no communicator given");
    // Each parameter once, also one that several layers share: summed twice, it would count twice.
    for (Var<T>& p : model.parameters()) {
        const bool seen = std::any_of(parameters_.begin(), parameters_.end(),
                                      [&](const Var<T>& q) { return q.node() == p.node(); });
        if (!seen) parameters_.push_back(p);
    }
    std::reverse(parameters_.begin(), parameters_.end());
    const std::size_t bucket_elements = std::max<std::size_t>(bucket_bytes / sizeof(double), 1);
    std::size_t filled = 0;
    for (std::size_t p = 0; p < parameters_.size(); ++p) {
        const std::size_t size = parameters_[p].value().size() + 1;  // and its "has a gradient" flag
        if (buckets_.empty() || (filled > 0 && filled + size > bucket_elements)) {
            buckets_.emplace_back();
            filled = 0;
        }
        buckets_.back().push_back(p);
        filled += size;
    }
}

template <class T>
void DataParallel<T>::broadcast_state(int root) {
    Communicator& c = *communicator_;
    for (Var<T>& p : parameters_) c.broadcast(bytes_of(p.node()->value), root);
    broadcast_buffers(root);
}

template <class T>
void DataParallel<T>::broadcast_buffers(int root) {
    Communicator& c = *communicator_;
    for (auto& [name, buffer] : model_.named_buffers()) {
        if (buffer.tensor) c.broadcast(bytes_of(*buffer.tensor), root);
        if (buffer.counter) c.broadcast(std::as_writable_bytes(std::span(buffer.counter, 1)), root);
    }
}

template <class T>
void DataParallel<T>::reduce_gradients() {
    std::vector<double> flat;
    for (const std::vector<std::size_t>& bucket : buckets_) {
        flat.clear();
        for (std::size_t p : bucket) {
            const Node<T>& node = *parameters_[p].node();
            flat.push_back(node.has_grad ? 1.0 : 0.0);
            if (node.has_grad) {
                flat.insert(flat.end(), node.grad.begin(), node.grad.end());
            } else {
                flat.insert(flat.end(), node.value.size(), 0.0);
            }
        }
        all_reduce_sum(*communicator_, flat);
        std::size_t at = 0;
        for (std::size_t p : bucket) {
            Node<T>& node = *parameters_[p].node();
            const bool any = flat[at++] > 0.0;
            if (any) {
                prepare_grad_buffer(node);
                for (T& g : node.grad) g = static_cast<T>(flat[at++]);
            } else {
                at += node.value.size();
            }
        }
    }
}

template class DataParallel<float>;
template class DataParallel<double>;

}  // namespace xgrad
