#include "layers/distributed/data_parallel.hpp"

#include <algorithm>
#include <span>
#include <stdexcept>
#include <unordered_set>

namespace xgrad {

namespace {

template <class T>
std::span<std::byte> bytes_of(xt::xarray<T>& a) {
    return std::as_writable_bytes(std::span(a.data(), a.size()));
}

}  // namespace

template <class T>
DataParallel<T>::DataParallel(Module<T>& model, std::shared_ptr<Communicator> communicator, std::size_t bucket_bytes)
    : model_(model), communicator_(communicator ? communicator->duplicate() : nullptr) {
    if (!communicator_) throw std::invalid_argument("DataParallel: no communicator given");
    // Each parameter once, also one that several layers share: summed twice, it would count twice.
    std::unordered_set<const Node<T>*> seen;
    for (Var<T>& p : model.parameters()) {
        if (seen.insert(p.node().get()).second) parameters_.push_back(p);
    }
    std::reverse(parameters_.begin(), parameters_.end());
    const std::size_t bucket_elements = std::max<std::size_t>(bucket_bytes / sizeof(T), 1);
    std::size_t filled = 0;
    for (std::size_t p = 0; p < parameters_.size(); ++p) {
        const std::size_t size = parameters_[p].value().size() + 1;  // and its "has a gradient" flag
        if (buckets_.empty() || (filled > 0 && filled + size > bucket_elements)) {
            buckets_.emplace_back();
            filled = 0;
        }
        buckets_.back().parameters.push_back(p);
        bucket_of_[parameters_[p].node().get()] = buckets_.size() - 1;
        filled += size;
    }
    for (Bucket& bucket : buckets_) {
        std::size_t n = 0;
        for (std::size_t p : bucket.parameters) n += 1 + parameters_[p].value().size();
        bucket.packed.resize(n);
        bucket.gathered.resize(n * static_cast<std::size_t>(communicator_->size()));
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
void DataParallel<T>::start(std::size_t k) {
    Bucket& bucket = buckets_[k];
    T* out = bucket.packed.data();
    for (std::size_t p : bucket.parameters) {
        const Node<T>& node = *parameters_[p].node();
        *out++ = node.has_grad ? T(1) : T(0);
        out = node.has_grad ? std::copy(node.grad.begin(), node.grad.end(), out) : std::fill_n(out, node.value.size(), T(0));
    }
    bucket.pending = communicator_->start_all_gather(std::span<const T>(bucket.packed), bucket.gathered);
}

template <class T>
void DataParallel<T>::finish() {
    while (started_ < buckets_.size()) start(started_++);
    const std::size_t ranks = static_cast<std::size_t>(communicator_->size());
    for (Bucket& bucket : buckets_) {
        bucket.pending->wait();
        bucket.pending.reset();
        const std::size_t n = bucket.packed.size();
        std::size_t at = 0;  // into rank 0's part of gathered
        for (std::size_t p : bucket.parameters) {
            Node<T>& node = *parameters_[p].node();
            bool any = false;
            for (std::size_t r = 0; r < ranks; ++r) any = any || bucket.gathered[r * n + at] != T(0);
            ++at;
            const std::size_t size = node.value.size();
            if (any) {
                prepare_grad_buffer(node);
                sum_over_ranks(bucket.gathered.data() + at, n, ranks, size, node.grad.data());
            }
            at += size;
        }
    }
}

template <class T>
void DataParallel<T>::reduce_gradients() {
    if (communicator_->size() == 1) return;  // the sum over one rank is its own gradient, bit for bit
    started_ = 0;
    finish();
}

template <class T>
void DataParallel<T>::backward(const Var<T>& loss, const xt::xarray<T>& seed) {
    if (communicator_->size() == 1) return loss.backward(seed);
    started_ = 0;
    for (Bucket& bucket : buckets_) bucket.unfinished = bucket.parameters.size();
    overlapped_ = 0;
    const LeafFinished<T> leaf_finished = [this](Node<T>& leaf) {
        const auto it = bucket_of_.find(&leaf);
        if (it == bucket_of_.end()) return;  // an input that requires a gradient, not a parameter
        --buckets_[it->second].unfinished;
        while (started_ < buckets_.size() && buckets_[started_].unfinished == 0) {
            start(started_++);
            ++overlapped_;
        }
        for (std::size_t k = 0; k < started_; ++k) {
            if (buckets_[k].pending) buckets_[k].pending->test();  // MPI moves a collective on inside its calls
        }
    };
    try {
        loss.backward(seed, false, leaf_finished);
    } catch (...) {
        // Not waited for (another rank may never join them): the requests and their buffers are
        // left to MPI, never freed, and the bucket gets buffers of its own again.
        for (Bucket& bucket : buckets_) {
            if (!bucket.pending) continue;
            (void)bucket.pending.release();
            auto* abandoned = new std::vector<T>[2]{std::move(bucket.packed), std::move(bucket.gathered)};
            bucket.packed.resize(abandoned[0].size());
            bucket.gathered.resize(abandoned[1].size());
        }
        throw;
    }
    finish();
}

template class DataParallel<float>;
template class DataParallel<double>;

}  // namespace xgrad
