// Sequential: modules applied in order, as torch.nn.Sequential. Each is registered as a
// submodule under its position ("0", "1", ...) or under a given name ("fc1"), so parameter names
// and error messages say which one it is.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/var.hpp"
#include "layers/module.hpp"

namespace xgrad {

template <class T>
class Sequential : public Module<T> {
public:
    Sequential() = default;
    Sequential(std::initializer_list<std::shared_ptr<Module<T>>> modules);

    // Appends under the name of its position; returns the module for further use.
    template <class M>
    std::shared_ptr<M> add(std::shared_ptr<M> module) {
        return add(std::to_string(modules_.size()), std::move(module));
    }
    template <class M>
    std::shared_ptr<M> add(std::string name, std::shared_ptr<M> module) {
        if (!module) throw std::invalid_argument("Sequential::add: null module '" + name + "'");
        modules_.push_back(module);
        return this->register_module(std::move(name), std::move(module));
    }

    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Sequential"; }

    std::size_t size() const { return modules_.size(); }
    Module<T>& operator[](std::size_t i) { return *modules_.at(i); }

private:
    std::vector<std::shared_ptr<Module<T>>> modules_;
};

extern template class Sequential<float>;
extern template class Sequential<double>;

}  // namespace xgrad
