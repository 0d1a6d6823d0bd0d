// Which code runs Conv2d<float>'s convolutions: its own (im2col and sgemm, bits independent of the
// thread count) or oneDNN's (Debian's libdnnl: JIT-compiled direct convolutions on blocked layouts,
// faster than im2col and sgemm at the seed CNN's shapes; float only, in OpenMP's threads, as many as
// TBB allows the caller; its weight gradient's bits depend on the thread count). Conv2d<double>
// always runs its own. The choice is the calling thread's: a forward runs on the backend of the
// thread that calls it, its backward on the same.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace xgrad {

enum class ConvBackend { own, onednn };

// Whether this build was linked with oneDNN (meson option `onednn`).
bool onednn_convolution_available();

// The backend of every Conv2d<float> forward this thread makes from now on; a backward runs on the
// backend of its forward. std::invalid_argument for onednn in a build without it.
void set_conv_backend(ConvBackend backend);
ConvBackend conv_backend();

// "own" or "onednn", as the --conv-backend flag spells them.
std::string conv_backend_name(ConvBackend backend);
std::optional<ConvBackend> parse_conv_backend(std::string_view name);

// Sets a backend for its scope and restores the previous one.
class ConvBackendScope {
public:
    explicit ConvBackendScope(ConvBackend backend) : previous_(conv_backend()) { set_conv_backend(backend); }
    ~ConvBackendScope() { set_conv_backend(previous_); }
    ConvBackendScope(const ConvBackendScope&) = delete;
    ConvBackendScope& operator=(const ConvBackendScope&) = delete;

private:
    ConvBackend previous_;
};

}  // namespace xgrad
