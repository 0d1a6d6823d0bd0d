#include "layers/module.hpp"

#include "autodiff/grad_mode.hpp"

namespace xgrad {

template <class T>
std::vector<std::pair<std::string, Var<T>>> Module<T>::named_parameters() const {
    std::vector<std::pair<std::string, Var<T>>> out;
    for (const auto& [name, p] : parameters_) out.emplace_back(name, *p);
    for (const auto& [child_name, child] : children_) {
        for (auto& [name, p] : child->named_parameters()) out.emplace_back(child_name + "." + name, p);
    }
    return out;
}

template <class T>
std::vector<Var<T>> Module<T>::parameters() const {
    std::vector<Var<T>> out;
    for (auto& [name, p] : named_parameters()) out.push_back(p);
    return out;
}

template <class T>
std::vector<std::pair<std::string, BufferRef<T>>> Module<T>::named_buffers() const {
    std::vector<std::pair<std::string, BufferRef<T>>> out;
    for (const auto& [name, b] : buffers_) out.emplace_back(name, BufferRef<T>{b.get(), nullptr});
    for (const auto& [name, c] : counters_) out.emplace_back(name, BufferRef<T>{nullptr, c.get()});
    for (const auto& [child_name, child] : children_) {
        for (auto& [name, b] : child->named_buffers()) out.emplace_back(child_name + "." + name, b);
    }
    return out;
}

template <class T>
void Module<T>::train(bool on) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
}

template <class T>
std::vector<std::pair<std::string, std::shared_ptr<Module<T>>>> Module<T>::named_modules() const {
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
    for (const auto& [child_name, child] : children_) {
        out.emplace_back(child_name, child);
        for (auto& [name, m] : child->named_modules()) out.emplace_back(child_name + "." + name, m);
    }
    return out;
}

template <class T>
void Module<T>::set_step(std::size_t step) {
    step_ = step;
    for (auto& [name, child] : children_) child->set_step(step);
}

template <class T>
void Module<T>::run_forward_hooks(const Var<T>& input, const Var<T>& output) {
    NoGrad no_grad;
    forward_hooks_.run({path_, input, output, step_});
}

template <class T>
void Module<T>::zero_grad() {
    for (auto& p : parameters()) p.zero_grad();
}

template <class T>
std::string Module<T>::where() const {
    return path_.empty() ? describe() : path_ + " (" + describe() + ")";
}

template <class T>
Var<T>& Module<T>::register_parameter(std::string name, Var<T> parameter) {
    parameter.set_requires_grad(true);
    parameters_.emplace_back(std::move(name), std::make_unique<Var<T>>(std::move(parameter)));
    return *parameters_.back().second;
}

template <class T>
xt::xarray<T>& Module<T>::register_buffer(std::string name, xt::xarray<T> value) {
    buffers_.emplace_back(std::move(name), std::make_unique<xt::xarray<T>>(std::move(value)));
    return *buffers_.back().second;
}

template <class T>
std::int64_t& Module<T>::register_counter(std::string name, std::int64_t value) {
    counters_.emplace_back(std::move(name), std::make_unique<std::int64_t>(value));
    return *counters_.back().second;
}

template <class T>
void Module<T>::set_path(const std::string& path) {
    path_ = path;
    for (auto& [name, child] : children_) child->set_path(path + "." + name);
}

template class Module<float>;
template class Module<double>;

}  // namespace xgrad
