// Forward hooks, as torch's register_forward_hook: callbacks a module runs after each forward with
// what it computed, so that a probe can read a layer's input and output without walking the model
// by hand. Module<T>::register_forward_hook returns a HookHandle; the hook stays registered until
// the handle is destroyed or its remove() is called.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/var.hpp"

namespace xgrad {

// What a hook receives. `step` is the training step the caller last gave the model's tree
// (Module::set_step; the trainer sets it before each step's forward; 0 until then): a module does
// not count steps itself, and one forward may run several times in a step (evaluation, probes).
template <class T>
struct ForwardHookContext {
    const std::string& path;  // the module's dotted path ("bn1", "block.0")
    const Var<T>& input;
    const Var<T>& output;
    std::size_t step;
};

template <class T>
using ForwardHook = std::function<void(const ForwardHookContext<T>&)>;

// Unregisters its hook when destroyed or on remove(); harmless after the module is gone.
class [[nodiscard]] HookHandle {
public:
    HookHandle() = default;
    explicit HookHandle(std::function<void()> remove) : remove_(std::move(remove)) {}
    HookHandle(HookHandle&& other) noexcept : remove_(std::exchange(other.remove_, nullptr)) {}
    HookHandle& operator=(HookHandle&& other) noexcept {
        if (this != &other) {
            remove();
            remove_ = std::exchange(other.remove_, nullptr);
        }
        return *this;
    }
    HookHandle(const HookHandle&) = delete;
    HookHandle& operator=(const HookHandle&) = delete;
    ~HookHandle() { remove(); }

    void remove() {
        if (remove_) std::exchange(remove_, nullptr)();
    }

private:
    std::function<void()> remove_;
};

// A module's hooks, in registration order. The list is shared with the handles (weakly), so a
// handle outliving its module removes nothing and touches no freed memory.
template <class T>
class ForwardHooks {
public:
    // One pointer test: what a forward without hooks pays.
    bool empty() const { return !list_ || list_->hooks.empty(); }

    HookHandle add(ForwardHook<T> hook) {
        if (!list_) list_ = std::make_shared<List>();
        const std::uint64_t id = list_->next_id++;
        list_->hooks.emplace_back(id, std::make_shared<ForwardHook<T>>(std::move(hook)));
        return HookHandle([weak = std::weak_ptr<List>(list_), id] {
            if (auto list = weak.lock()) std::erase_if(list->hooks, [id](const auto& entry) { return entry.first == id; });
        });
    }

    // Over a copy of the list: a hook that removes itself or another (or adds one) takes effect
    // from the next forward on. The copy shares the hooks themselves, so a hook with state (a
    // mutable lambda, a counter) keeps it from one forward to the next.
    void run(const ForwardHookContext<T>& context) const {
        const auto hooks = list_->hooks;
        for (const auto& [id, hook] : hooks) (*hook)(context);
    }

private:
    struct List {
        std::uint64_t next_id = 0;
        std::vector<std::pair<std::uint64_t, std::shared_ptr<ForwardHook<T>>>> hooks;
    };
    std::shared_ptr<List> list_;
};

}  // namespace xgrad
