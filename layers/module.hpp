// Module: the PyTorch-shaped base of every layer. A module owns named parameters (Vars that
// require gradients), named buffers (state that is saved but not trained, such as BN running
// statistics) and named submodules; names nest with dots as in torch's state_dict
// ("bn1.running_mean"). train()/eval() switch the mode of the whole tree. Forward hooks
// (forward_hook.hpp) run after a module's forward whenever it is called through operator(), as
// Sequential calls its children, so a hook on a layer nested at any depth fires.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/var.hpp"
#include "layers/forward_hook.hpp"

namespace xgrad {

class Rng;

// A buffer as torch stores it: a float tensor (running_mean, running_var) or an integer
// counter (num_batches_tracked, an int64 scalar in torch).
template <class T>
struct BufferRef {
    xt::xarray<T>* tensor = nullptr;
    std::int64_t* counter = nullptr;
};

template <class T>
class Module {
public:
    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    virtual Var<T> forward(const Var<T>& x) = 0;
    // forward, then this module's hooks in registration order. A container calls its children
    // through it, never through forward.
    Var<T> operator()(const Var<T>& x) {
        Var<T> y = forward(x);
        if (!forward_hooks_.empty()) run_forward_hooks(x, y);
        return y;
    }

    // `hook` runs after every forward of this module, with its path, input, output and the
    // tree's step, inside a NoGrad scope: what it computes from the Vars records no graph node.
    // It must not change the Vars' values. Unregistered when the handle goes.
    HookHandle register_forward_hook(ForwardHook<T> hook) { return forward_hooks_.add(std::move(hook)); }
    // The step the forward hooks of this module and all its submodules receive.
    void set_step(std::size_t step);

    // The layer's kind and constructor arguments, e.g. "Linear(in_features=3136, out_features=128)".
    virtual std::string describe() const = 0;

    std::vector<std::pair<std::string, Var<T>>> named_parameters() const;
    std::vector<Var<T>> parameters() const;
    std::vector<std::pair<std::string, BufferRef<T>>> named_buffers() const;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
    // Every submodule at any depth, by dotted path ("block.0"), parents before their children;
    // not this module itself.
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;

    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    void zero_grad();
    // The generator of a layer that draws random numbers in training (Dropout's masks), so that
    // a checkpoint can hold its state; nullptr for a deterministic layer.
    virtual Rng* generator() { return nullptr; }

    // The dotted path of this module inside the model it was registered in ("" at the top);
    // errors raised by a layer name it, e.g. "fc1 (Linear(in_features=50176, ...))".
    const std::string& path() const { return path_; }
    std::string where() const;

protected:
    Var<T>& register_parameter(std::string name, Var<T> parameter);
    xt::xarray<T>& register_buffer(std::string name, xt::xarray<T> value);
    std::int64_t& register_counter(std::string name, std::int64_t value);
    template <class M>
    std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
        module->set_path(path_.empty() ? name : path_ + "." + name);
        children_.emplace_back(std::move(name), module);
        return module;
    }

private:
    void set_path(const std::string& path);
    void run_forward_hooks(const Var<T>& input, const Var<T>& output);

    bool training_ = true;
    std::size_t step_ = 0;
    std::string path_;
    ForwardHooks<T> forward_hooks_;
    // Held through unique_ptr so references handed out stay valid as more are registered.
    std::vector<std::pair<std::string, std::unique_ptr<Var<T>>>> parameters_;
    std::vector<std::pair<std::string, std::unique_ptr<xt::xarray<T>>>> buffers_;
    std::vector<std::pair<std::string, std::unique_ptr<std::int64_t>>> counters_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace xgrad
