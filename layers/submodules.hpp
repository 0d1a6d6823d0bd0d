// Every module of a model's tree below its root, for the passes that must reach layers nested in
// a block (a Residual's body) as well as the top-level ones: re-initialization, seeding the random
// layers, saving their generators. Each module's path() is its dotted name ("block1.body.3").
#pragma once

#include <vector>

#include "layers/module.hpp"

namespace xgrad {

// Depth first, in registration order: a module, then the modules below it, then its next sibling.
template <class T>
std::vector<Module<T>*> submodules(const Module<T>& root) {
    std::vector<Module<T>*> out;
    for (const auto& [name, child] : root.named_children()) {
        out.push_back(child.get());
        for (Module<T>* below : submodules(*child)) out.push_back(below);
    }
    return out;
}

}  // namespace xgrad
