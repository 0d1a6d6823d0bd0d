// A layer of a model by its dotted path, as the state_dict and the hooks name it ("bn1",
// "block.0"), for the flags and probes that name layers.
#pragma once

#include <string>

#include "layers/module.hpp"

namespace xgrad {

// The submodule of `model` at `path`; otherwise a std::invalid_argument starting with `who` (a
// flag or a function) that names the path and lists the model's layer paths.
Module<float>& layer_at(const Module<float>& model, const std::string& path, const std::string& who);

}  // namespace xgrad
