// The IDX reader (experiments/idx_file.hpp), plain and gzip, as images and as labels. Bad input
// must be a std::runtime_error; what parses must hold exactly the bytes its header declares.
#include <stdexcept>

#include "experiments/idx_file.hpp"
#include "fuzz/harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes = xgrad_fuzz::input_bytes(data, size);
    try {
        const xgrad::IdxImages images = xgrad::parse_idx_images(bytes, "fuzz-images.idx");
        if (images.pixels.size() != images.count * images.rows * images.cols) {
            xgrad_fuzz::property_failed("the pixels do not fill count x rows x cols");
        }
    } catch (const std::runtime_error&) {
    }
    try {
        xgrad::parse_idx_labels(bytes, "fuzz-labels.idx");
    } catch (const std::runtime_error&) {
    }
    return 0;
}
