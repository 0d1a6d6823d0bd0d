#include "layers/conv_backend.hpp"

#include <stdexcept>

namespace xgrad {

namespace {
// Per thread: runs that train at once on their own threads (xgrad experiment --jobs) each keep
// their own choice.
thread_local ConvBackend chosen_backend = ConvBackend::own;
}  // namespace

bool onednn_convolution_available() { return XGRAD_HAVE_ONEDNN != 0; }

void set_conv_backend(ConvBackend backend) {
    if (backend == ConvBackend::onednn && !onednn_convolution_available()) {
        throw std::invalid_argument("conv backend onednn: this build has no oneDNN (meson option onednn); use own");
    }
    chosen_backend = backend;
}

ConvBackend conv_backend() { return chosen_backend; }

std::string conv_backend_name(ConvBackend backend) { return backend == ConvBackend::onednn ? "onednn" : "own"; }

std::optional<ConvBackend> parse_conv_backend(std::string_view name) {
    if (name == "own") return ConvBackend::own;
    if (name == "onednn") return ConvBackend::onednn;
    return std::nullopt;
}

}  // namespace xgrad
