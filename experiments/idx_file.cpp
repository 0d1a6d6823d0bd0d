#include "experiments/idx_file.hpp"

#include <stdexcept>
#include <string>
#include <utility>

#include "experiments/gzip.hpp"
#include "experiments/hex.hpp"
#include "experiments/regular_file.hpp"

namespace xgrad {
namespace {

// The third byte says "unsigned bytes", the fourth the number of dimensions.
constexpr std::uint32_t images_magic = 0x00000803;
constexpr std::uint32_t labels_magic = 0x00000801;

// The IDX data of a file, decompressed if it was gzip; errors name the file and the offset.
class IdxData {
public:
    IdxData(std::string_view file_bytes, const std::string& source)
        : source_(source), gzip_(is_gzip(file_bytes)),
          decompressed_(gzip_ ? gunzip(file_bytes, source) : std::string()),
          data_(gzip_ ? std::string_view(decompressed_) : file_bytes) {}

    std::string_view data() const { return data_; }

    std::string at(std::size_t offset) const {
        return "byte offset " + std::to_string(offset) + (gzip_ ? " of the decompressed data" : "");
    }

    [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(source_ + ": " + what); }

private:
    const std::string& source_;
    bool gzip_;
    std::string decompressed_;
    std::string_view data_;
};

// The bytes the header declares: its dimensions' product; a bogus header may overflow it.
std::size_t checked_payload(const IdxData& in, std::size_t header_bytes, const std::vector<std::size_t>& dims) {
    std::size_t product = 1;
    bool overflow = false;
    for (const std::size_t d : dims) {
        overflow = overflow || __builtin_mul_overflow(product, d, &product);
    }
    if (overflow || product > SIZE_MAX - header_bytes) {
        in.fail("the header's dimensions multiply to more bytes than can be addressed");
    }
    return product;
}

struct IdxArray {
    std::vector<std::size_t> dims;
    std::vector<std::uint8_t> data;
};

// layout(dims) describes the expected contents for the size messages, e.g. "... 60000 labels".
// The header's claim is checked against the bytes present before anything is allocated for it.
template <class Layout>
IdxArray parse_idx(std::string_view file_bytes, const std::string& source, std::uint32_t magic, const char* kind,
                   Layout layout) {
    const IdxData in(file_bytes, source);
    const std::string_view data = in.data();
    const std::size_t ndims = magic & 0xff;
    const std::size_t header_bytes = 4 * (1 + ndims);
    const std::string header_layout =
        (header_bytes == 8 ? "an " : "a ") + std::to_string(header_bytes) + "-byte header";

    const auto word = [&](std::size_t i) {
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 4; ++k) v = v << 8 | static_cast<std::uint8_t>(data[4 * i + k]);
        return v;
    };
    if (data.size() >= 4 && word(0) != magic) {
        in.fail("wrong magic number at byte offset 0: expected " + hex32(magic) + " (IDX " + kind + "), found " +
                hex32(word(0)));
    }
    if (data.size() < header_bytes) {
        in.fail("truncated: expected " + std::to_string(header_bytes) + " bytes (" + header_layout +
                "), the data ends at " + in.at(data.size()));
    }

    IdxArray array;
    for (std::size_t i = 1; i <= ndims; ++i) {
        array.dims.push_back(word(i));
    }
    const std::size_t payload = checked_payload(in, header_bytes, array.dims);
    const std::size_t total = header_bytes + payload;
    const std::string expected =
        "expected " + std::to_string(total) + " bytes (" + header_layout + " and " + layout(array.dims) + "), ";
    if (data.size() < total) in.fail("truncated: " + expected + "the data ends at " + in.at(data.size()));
    if (data.size() > total) in.fail(expected + "the data goes on past " + in.at(total));
    const std::string_view body = data.substr(header_bytes);
    array.data.assign(body.begin(), body.end());
    return array;
}

}  // namespace

IdxImages parse_idx_images(std::string_view file_bytes, const std::string& source) {
    IdxArray a = parse_idx(file_bytes, source, images_magic, "images", [](const std::vector<std::size_t>& d) {
        return std::to_string(d[0]) + " images of " + std::to_string(d[1]) + "x" + std::to_string(d[2]);
    });
    return IdxImages{a.dims[0], a.dims[1], a.dims[2], std::move(a.data)};
}

std::vector<std::uint8_t> parse_idx_labels(std::string_view file_bytes, const std::string& source) {
    return parse_idx(file_bytes, source, labels_magic, "labels",
                     [](const std::vector<std::size_t>& d) { return std::to_string(d[0]) + " labels"; })
        .data;
}

IdxImages read_idx_images(const std::filesystem::path& path) {
    return parse_idx_images(read_regular_file(path), path.string());
}

std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& path) {
    return parse_idx_labels(read_regular_file(path), path.string());
}

IdxLabelledImages read_idx_labelled(const std::filesystem::path& images_path,
                                    const std::filesystem::path& labels_path) {
    IdxLabelledImages set{read_idx_images(images_path), read_idx_labels(labels_path)};
    if (set.images.count != set.labels.size()) {
        throw std::runtime_error("image and label counts differ: " + images_path.string() + " has " +
                                 std::to_string(set.images.count) + " images, " + labels_path.string() + " has " +
                                 std::to_string(set.labels.size()) + " labels");
    }
    return set;
}

}  // namespace xgrad
