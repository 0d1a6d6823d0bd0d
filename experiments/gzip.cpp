#include "experiments/gzip.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <new>
#include <stdexcept>

#include "experiments/hex.hpp"

namespace xgrad {
namespace {

constexpr unsigned char magic[2] = {0x1f, 0x8b};
constexpr std::size_t fixed_header_bytes = 10;
constexpr std::size_t trailer_bytes = 8;
constexpr unsigned deflate_method = 8;
// FLG bits: FHCRC, FEXTRA, FNAME, FCOMMENT; the top three are reserved and must be zero.
constexpr unsigned flag_header_crc = 0x02, flag_extra = 0x04, flag_name = 0x08, flag_comment = 0x10;
constexpr unsigned reserved_flags = 0xe0;

// One gzip file being decoded; its errors name the file, the member and the byte offset.
class GzipReader {
public:
    GzipReader(std::string_view bytes, const std::string& source) : bytes_(bytes), source_(source) {}

    std::string decode() {
        std::string out;
        do {
            ++member_;
            const std::size_t member_start = out.size();
            pos_ = skip_header(pos_);
            pos_ = inflate_into(pos_, out);
            check_trailer(pos_, std::string_view(out).substr(member_start));
            pos_ += trailer_bytes;
        } while (pos_ < bytes_.size());
        return out;
    }

private:
    [[noreturn]] void fail(std::size_t offset, const std::string& what) const {
        throw std::runtime_error(source_ + ": " + what + " (gzip member " + std::to_string(member_) + ", byte offset " +
                                 std::to_string(offset) + " of the file)");
    }

    // `length` bytes at `offset`, or an error saying the file is cut short there.
    std::string_view need(std::size_t offset, std::size_t length, const char* what) const {
        if (offset > bytes_.size() || length > bytes_.size() - offset) {
            fail(offset, std::string("truncated: ") + what + " needs " + std::to_string(length) + " bytes, the file has " +
                             std::to_string(bytes_.size() - std::min(offset, bytes_.size())) + " left");
        }
        return bytes_.substr(offset, length);
    }

    std::uint8_t byte(std::size_t offset, const char* what) const {
        return static_cast<std::uint8_t>(need(offset, 1, what)[0]);
    }

    // Past a zero-terminated field (the original name or a comment).
    std::size_t skip_zero_terminated(std::size_t offset, const char* what) const {
        const std::size_t end = bytes_.find('\0', offset);
        if (end == std::string_view::npos) fail(offset, std::string("truncated: ") + what + " has no terminating zero byte");
        return end + 1;
    }

    // The offset of the deflate data after the member's header at `start`.
    std::size_t skip_header(std::size_t start) const {
        const std::string_view fixed = need(start, fixed_header_bytes, "the header");
        if (static_cast<unsigned char>(fixed[0]) != magic[0] || static_cast<unsigned char>(fixed[1]) != magic[1]) {
            fail(start, member_ == 1 ? "not gzip data (bad magic number)" : "data after the last member (not a gzip member)");
        }
        if (const unsigned method = static_cast<unsigned char>(fixed[2]); method != deflate_method) {
            fail(start + 2, "unknown compression method " + std::to_string(method));
        }
        const unsigned flags = static_cast<unsigned char>(fixed[3]);
        if (flags & reserved_flags) fail(start + 3, "reserved header flags set");
        std::size_t pos = start + fixed_header_bytes;
        if (flags & flag_extra) {
            const std::size_t extra = byte(pos, "the extra field's length") | std::size_t{byte(pos + 1, "the extra field's length")} << 8;
            pos += 2 + need(pos + 2, extra, "the extra field").size();
        }
        if (flags & flag_name) pos = skip_zero_terminated(pos, "the file name");
        if (flags & flag_comment) pos = skip_zero_terminated(pos, "the comment");
        if (flags & flag_header_crc) {
            const unsigned stored = byte(pos, "the header CRC") | unsigned{byte(pos + 1, "the header CRC")} << 8;
            if (stored != (crc32_of(bytes_.substr(start, pos - start)) & 0xffff)) fail(pos, "header CRC mismatch");
            pos += 2;
        }
        return pos;
    }

    // Inflates the raw deflate stream at `start` onto `out`; returns the offset just past it.
    std::size_t inflate_into(std::size_t start, std::string& out) const {
        z_stream stream{};
        if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) throw std::bad_alloc();
        struct End {
            z_stream& s;
            ~End() { inflateEnd(&s); }
        } end{stream};
        const auto* const first = reinterpret_cast<const Bytef*>(bytes_.data());
        std::size_t in = start;        // next byte of the file to hand to inflate
        std::size_t produced = out.size();
        for (;;) {
            if (stream.avail_in == 0) {
                stream.next_in = const_cast<Bytef*>(first + in);  // zlib's API is not const-correct
                stream.avail_in = static_cast<uInt>(std::min<std::size_t>(bytes_.size() - in, UINT_MAX));
                in += stream.avail_in;
            }
            if (produced == out.size()) out.resize(out.size() + std::max<std::size_t>(out.size() / 2, 1 << 16));
            stream.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
            stream.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, UINT_MAX));
            const uInt room = stream.avail_out;
            const int result = inflate(&stream, Z_NO_FLUSH);
            produced += room - stream.avail_out;
            const std::size_t reached = in - stream.avail_in;
            if (result == Z_STREAM_END) {
                out.resize(produced);
                return reached;
            }
            if (result == Z_MEM_ERROR) throw std::bad_alloc();
            if (result == Z_DATA_ERROR) fail(reached, std::string("corrupt deflate data: ") + (stream.msg ? stream.msg : "invalid"));
            if (stream.avail_in == 0 && in == bytes_.size() && stream.avail_out != 0) {
                fail(bytes_.size(), "truncated: the file ends inside the compressed data");
            }
        }
    }

    void check_trailer(std::size_t at, std::string_view data) const {
        const std::string_view trailer = need(at, trailer_bytes, "the trailer (CRC-32 and length)");
        const auto word = [&](std::size_t i) {
            std::uint32_t v = 0;
            for (std::size_t k = 4; k-- > 0;) v = v << 8 | static_cast<unsigned char>(trailer[i + k]);
            return v;
        };
        if (const std::uint32_t computed = crc32_of(data); word(0) != computed) {
            fail(at, "CRC-32 mismatch: the trailer says " + hex32(word(0)) + ", the data decompressed has " + hex32(computed));
        }
        // ISIZE is the length modulo 2^32.
        if (const auto length = static_cast<std::uint32_t>(data.size()); word(4) != length) {
            fail(at + 4, "length mismatch: the trailer says " + std::to_string(word(4)) + " bytes, the data decompressed has " +
                             std::to_string(length) + " (modulo 2^32)");
        }
    }

    std::string_view bytes_;
    const std::string& source_;
    std::size_t pos_ = 0;
    std::size_t member_ = 0;
};

}  // namespace

std::uint32_t crc32_of(std::string_view bytes) {
    return static_cast<std::uint32_t>(
        crc32_z(crc32_z(0, nullptr, 0), reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

bool is_gzip(std::string_view bytes) {
    return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == magic[0] &&
           static_cast<unsigned char>(bytes[1]) == magic[1];
}

std::string gunzip(std::string_view bytes, const std::string& source) { return GzipReader(bytes, source).decode(); }

}  // namespace xgrad
