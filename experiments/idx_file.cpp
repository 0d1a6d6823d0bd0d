#include "experiments/idx_file.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace xgrad {
namespace {

// The third byte says "unsigned bytes", the fourth the number of dimensions.
constexpr std::uint32_t images_magic = 0x00000803;
constexpr std::uint32_t labels_magic = 0x00000801;

// A bogus header must not allocate gigabytes up front: memory beyond this grows with the data read.
constexpr std::size_t max_reserve = std::size_t{1} << 26;

std::string hex32(std::uint32_t v) {
    std::array<char, 11> text{};
    std::snprintf(text.data(), text.size(), "0x%08x", v);
    return text.data();
}

// An IDX file, gzip or plain, read front to back; its errors name the file and the offset reached.
class IdxStream {
public:
    explicit IdxStream(std::filesystem::path path) : path_(std::move(path)) {
        errno = 0;
        file_ = gzopen(path_.c_str(), "rb");
        if (file_ == nullptr) {
            // zlib leaves errno at 0 only when it could not allocate its state.
            const int error = errno;
            throw std::runtime_error("cannot open " + path_.string() + ": " +
                                     (error != 0 ? std::generic_category().message(error) : "out of memory"));
        }
    }
    ~IdxStream() { gzclose(file_); }
    IdxStream(const IdxStream&) = delete;
    IdxStream& operator=(const IdxStream&) = delete;

    // Reads up to n bytes; fewer only where the data ends. Throws on a read error or corrupt gzip data.
    std::size_t read(std::uint8_t* dst, std::size_t n) {
        std::size_t got = 0;
        while (got < n) {
            const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, INT_MAX));
            const int r = gzread(file_, dst + got, chunk);
            if (r < 0) {
                throw_read_error();
            }
            got += static_cast<std::size_t>(r);
            if (static_cast<unsigned>(r) < chunk) {
                break;
            }
        }
        return got;
    }

    // How far the data went: zlib counts the bytes decompressed, including those of a failed read.
    std::string where() const { return at(static_cast<std::size_t>(gztell(file_))); }

    std::string at(std::size_t offset) const {
        return "byte offset " + std::to_string(offset) + (gzdirect(file_) ? "" : " of the decompressed data");
    }

    [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(path_.string() + ": " + what); }

    [[noreturn]] void truncated(std::size_t expected_bytes, const std::string& layout) const {
        int err = Z_OK;
        gzerror(file_, &err);
        // Z_BUF_ERROR: the file ended inside a gzip stream rather than after a complete one.
        const std::string cut = err == Z_BUF_ERROR ? " (the gzip stream is cut short)" : "";
        fail("truncated: expected " + std::to_string(expected_bytes) + " bytes (" + layout + "), the data ends at " +
             where() + cut);
    }

private:
    [[noreturn]] void throw_read_error() const {
        const int error = errno;
        int err = Z_OK;
        std::string message = gzerror(file_, &err);
        if (err == Z_ERRNO) {
            throw std::runtime_error("cannot read " + path_.string() + ": " + std::generic_category().message(error));
        }
        // zlib starts its message with the path, which fail() gives already.
        if (const std::string prefix = path_.string() + ": "; message.starts_with(prefix)) {
            message.erase(0, prefix.size());
        }
        fail((err == Z_DATA_ERROR ? "corrupt gzip data: " : "cannot decompress: ") + message + " (read up to " +
             where() + ")");
    }

    std::filesystem::path path_;
    gzFile file_ = nullptr;
};

// The bytes the header declares: its dimensions' product; a bogus header may overflow it.
std::size_t checked_payload(const IdxStream& in, std::size_t header_bytes, const std::vector<std::size_t>& dims) {
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

// layout(dims) describes the expected contents for the truncation message, e.g. "... 60000 labels".
template <class Layout>
IdxArray read_idx(const std::filesystem::path& path, std::uint32_t magic, const char* kind, Layout layout) {
    IdxStream in(path);
    const std::size_t ndims = magic & 0xff;
    const std::size_t header_bytes = 4 * (1 + ndims);
    const std::string header_layout =
        (header_bytes == 8 ? "an " : "a ") + std::to_string(header_bytes) + "-byte header";

    std::array<std::uint8_t, 4 * 4> header{};
    const std::size_t got = in.read(header.data(), header_bytes);
    const auto word = [&](std::size_t i) {
        return std::uint32_t{header[4 * i]} << 24 | std::uint32_t{header[4 * i + 1]} << 16 |
               std::uint32_t{header[4 * i + 2]} << 8 | std::uint32_t{header[4 * i + 3]};
    };
    if (got >= 4 && word(0) != magic) {
        in.fail("wrong magic number at byte offset 0: expected " + hex32(magic) + " (IDX " + kind + "), found " +
                hex32(word(0)));
    }
    if (got < header_bytes) {
        in.truncated(header_bytes, header_layout);
    }

    IdxArray array;
    for (std::size_t i = 1; i <= ndims; ++i) {
        array.dims.push_back(word(i));
    }
    const std::size_t payload = checked_payload(in, header_bytes, array.dims);
    const std::size_t total = header_bytes + payload;

    array.data.reserve(std::min(payload, max_reserve));
    while (array.data.size() < payload) {
        const std::size_t done = array.data.size();
        const std::size_t chunk = std::min(payload - done, max_reserve);
        array.data.resize(done + chunk);
        if (in.read(array.data.data() + done, chunk) < chunk) {
            in.truncated(total, header_layout + " and " + layout(array.dims));
        }
    }
    // Reading past the end also makes zlib check the gzip trailer's CRC and length.
    std::uint8_t extra = 0;
    if (in.read(&extra, 1) != 0) {
        in.fail("expected " + std::to_string(total) + " bytes (" + header_layout + " and " + layout(array.dims) +
                "), the data goes on past " + in.at(total));
    }
    return array;
}

}  // namespace

IdxImages read_idx_images(const std::filesystem::path& path) {
    IdxArray a = read_idx(path, images_magic, "images", [](const std::vector<std::size_t>& d) {
        return std::to_string(d[0]) + " images of " + std::to_string(d[1]) + "x" + std::to_string(d[2]);
    });
    return IdxImages{a.dims[0], a.dims[1], a.dims[2], std::move(a.data)};
}

std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& path) {
    return read_idx(path, labels_magic, "labels",
                    [](const std::vector<std::size_t>& d) { return std::to_string(d[0]) + " labels"; })
        .data;
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
