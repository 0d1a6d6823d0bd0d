#include "experiments/npz.hpp"


#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

#include "autodiff/shape.hpp"
#include "experiments/atomic_file.hpp"
#include "experiments/gzip.hpp"
#include "experiments/regular_file.hpp"

namespace xgrad {

// ZIP fields and the '<' dtypes are little-endian; values are copied in and out with memcpy.
static_assert(std::endian::native == std::endian::little, "npz I/O assumes a little-endian host");

namespace {

template <class T>
struct Dtype;
template <>
struct Dtype<float> {
    static constexpr std::string_view descr = "<f4";
    static constexpr std::string_view name = "float32";
};
template <>
struct Dtype<double> {
    static constexpr std::string_view descr = "<f8";
    static constexpr std::string_view name = "float64";
};
template <>
struct Dtype<std::int64_t> {
    static constexpr std::string_view descr = "<i8";
    static constexpr std::string_view name = "int64";
};

constexpr std::uint32_t local_header_signature = 0x04034b50;
constexpr std::uint32_t central_header_signature = 0x02014b50;
constexpr std::uint32_t end_of_central_directory_signature = 0x06054b50;
constexpr std::size_t local_header_size = 30;
constexpr std::size_t central_header_size = 46;
constexpr std::size_t end_of_central_directory_size = 22;
constexpr std::uint16_t zip_version = 20;  // 2.0: what stored entries need, as Python's zipfile writes
constexpr std::uint16_t made_by_unix = (3 << 8) | zip_version;
constexpr std::uint32_t regular_file_0644 = 0100644u << 16;
// 1980-01-01 00:00 in MS-DOS format: a fixed timestamp, so equal arrays give equal files.
constexpr std::uint16_t dos_date = (1 << 5) | 1;
constexpr std::uint16_t dos_time = 0;

constexpr std::string_view npy_magic = "\x93NUMPY";
constexpr std::size_t npy_alignment = 64;

// ---------------------------------------------------------------------------------------------
// Writing

template <class T>
void put(std::string& out, T value) {
    char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    out.append(raw, sizeof(T));
}

template <class T>
std::string npy_entry(const xt::xarray<T>& array) {
    std::string header = "{'descr': '" + std::string(Dtype<T>::descr) + "', 'fortran_order': False, 'shape': (";
    for (std::size_t d : array.shape()) header += std::to_string(d) + ", ";
    // Python writes a 1-tuple as "(n,)" and longer ones without the trailing comma.
    if (array.dimension() == 1) {
        header.pop_back();
    } else if (array.dimension() > 1) {
        header.resize(header.size() - 2);
    }
    header += "), }";
    // Spaces and a newline so that the data starts on a 64-byte boundary, as numpy pads.
    const std::size_t preamble = npy_magic.size() + 2 + 2;
    header.append(npy_alignment - (preamble + header.size() + 1) % npy_alignment, ' ');
    header += '\n';
    if (header.size() > std::numeric_limits<std::uint16_t>::max()) {
        throw std::invalid_argument("npz: an array of rank " + std::to_string(array.dimension()) +
                                    " has too long a header for .npy format 1.0");
    }
    std::string out(npy_magic);
    out += '\x01';
    out += '\x00';
    put(out, static_cast<std::uint16_t>(header.size()));
    out += header;
    const std::size_t data_bytes = array.size() * sizeof(T);
    if (data_bytes > 0) out.append(reinterpret_cast<const char*>(array.data()), data_bytes);
    return out;
}

// The fields the local and the central header share, from "version needed" to the name length.
void put_common_fields(std::string& out, std::uint32_t crc, std::uint32_t size, std::uint16_t name_length) {
    put(out, zip_version);
    put<std::uint16_t>(out, 0);  // flags
    put<std::uint16_t>(out, 0);  // method: stored
    put(out, dos_time);
    put(out, dos_date);
    put(out, crc);
    put(out, size);  // compressed
    put(out, size);  // uncompressed
    put(out, name_length);
}

template <class To>
To checked_zip_field(std::size_t value, const char* what) {
    // The all-ones values mean "see the zip64 record", which this writer does not produce.
    if (value >= std::numeric_limits<To>::max()) {
        throw std::invalid_argument(std::string("npz: ") + what + " too large for a zip archive without zip64");
    }
    return static_cast<To>(value);
}

// ---------------------------------------------------------------------------------------------
// Reading

// Bounds-checked little-endian reads from the whole file; every error names the file, the entry
// being read (once known) and the absolute byte offset.
class Reader {
public:
    Reader(std::string_view bytes, const std::string& source) : bytes_(bytes), source_(source) {}

    void set_entry(std::string entry) { entry_ = std::move(entry); }

    [[noreturn]] void fail(std::size_t offset, const std::string& what) const {
        std::string where = "npz " + source_;
        if (!entry_.empty()) where += ": entry '" + entry_ + "'";
        throw NpzError(where + " at byte " + std::to_string(offset) + ": " + what);
    }

    std::size_t size() const { return bytes_.size(); }

    std::string_view slice(std::size_t offset, std::size_t length, const char* what) const {
        if (offset > bytes_.size() || length > bytes_.size() - offset) {
            fail(std::min(offset, bytes_.size()), std::string("truncated: ") + what + " needs " + std::to_string(length) +
                                                      " bytes from byte " + std::to_string(offset) + ", the file has " +
                                                      std::to_string(bytes_.size()));
        }
        return bytes_.substr(offset, length);
    }

    template <class T>
    T get(std::size_t offset, const char* what) const {
        T value;
        std::memcpy(&value, slice(offset, sizeof(T), what).data(), sizeof(T));
        return value;
    }

    void expect_signature(std::size_t offset, std::uint32_t expected, const char* what) const {
        const auto found = get<std::uint32_t>(offset, what);
        if (found != expected) fail(offset, std::string("bad signature for ") + what + " (" + hex(found) + ", expected " + hex(expected) + ")");
    }

    static std::string hex(std::uint32_t value) {
        char text[16];
        std::snprintf(text, sizeof text, "0x%08x", value);
        return text;
    }

private:
    std::string_view bytes_;
    const std::string& source_;
    std::string entry_;
};

// The Python literal of an .npy header: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
struct NpyHeader {
    std::string descr;
    bool fortran_order = false;
    Shape shape;
};

class HeaderParser {
public:
    HeaderParser(const Reader& reader, std::string_view text, std::size_t offset)
        : reader_(reader), text_(text), offset_(offset) {}

    NpyHeader parse() {
        NpyHeader header;
        bool seen_descr = false, seen_order = false, seen_shape = false;
        expect('{');
        while (!accept('}')) {
            const std::string key = quoted();
            expect(':');
            if (key == "descr") {
                header.descr = quoted();
                seen_descr = true;
            } else if (key == "fortran_order") {
                header.fortran_order = boolean();
                seen_order = true;
            } else if (key == "shape") {
                header.shape = tuple();
                seen_shape = true;
            } else {
                fail("unexpected key '" + key + "' in the .npy header");
            }
            if (!accept(',')) {
                expect('}');
                break;
            }
        }
        skip_space();
        if (pos_ != text_.size()) fail("unexpected text after the .npy header dictionary");
        if (!seen_descr || !seen_order || !seen_shape) fail("the .npy header lacks 'descr', 'fortran_order' or 'shape'");
        return header;
    }

private:
    [[noreturn]] void fail(const std::string& what) const { reader_.fail(offset_ + pos_, what); }

    void skip_space() {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n')) ++pos_;
    }
    bool accept(char c) {
        skip_space();
        if (pos_ < text_.size() && text_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!accept(c)) fail(std::string("malformed .npy header: expected '") + c + "'");
    }
    std::string quoted() {
        skip_space();
        const char quote = pos_ < text_.size() ? text_[pos_] : '\0';
        if (quote != '\'' && quote != '"') fail("malformed .npy header: expected a quoted string");
        const std::size_t end = text_.find(quote, pos_ + 1);
        if (end == std::string_view::npos) fail("malformed .npy header: unterminated string");
        std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
        pos_ = end + 1;
        return s;
    }
    bool boolean() {
        skip_space();
        for (auto [word, value] : {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}}) {
            if (text_.substr(pos_, word.size()) == word) {
                pos_ += word.size();
                return value;
            }
        }
        fail("malformed .npy header: expected True or False");
    }
    Shape tuple() {
        Shape shape;
        expect('(');
        while (!accept(')')) {
            shape.push_back(dimension());
            if (!accept(',')) {
                expect(')');
                break;
            }
        }
        return shape;
    }
    std::size_t dimension() {
        skip_space();
        const std::size_t start = pos_;
        std::size_t value = 0;
        while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
            const auto digit = static_cast<std::size_t>(text_[pos_] - '0');
            if (value > (std::numeric_limits<std::size_t>::max() - digit) / 10) fail("shape dimension too large");
            value = value * 10 + digit;
            ++pos_;
        }
        if (pos_ == start) fail("malformed .npy header: expected a non-negative integer in the shape");
        return value;
    }

    const Reader& reader_;
    std::string_view text_;
    std::size_t offset_;
    std::size_t pos_ = 0;
};

template <class T>
NpyArray array_from(const Shape& shape, std::string_view data) {
    auto array = xt::xarray<T>::from_shape(shape);
    if (!data.empty()) std::memcpy(array.data(), data.data(), data.size());
    return array;
}

// The .npy file stored at [offset, offset + length).
NpyArray parse_npy(const Reader& reader, std::size_t offset, std::size_t length) {
    const std::string_view npy = reader.slice(offset, length, "the .npy entry");
    if (npy.substr(0, npy_magic.size()) != npy_magic) reader.fail(offset, "not an .npy array (bad magic)");
    // Format 1.0 has a 2-byte header length, 2.0 and 3.0 (numpy's choice for huge headers) 4 bytes.
    const std::uint8_t major = length > 6 ? static_cast<std::uint8_t>(npy[6]) : 0;
    if (major < 1 || major > 3) reader.fail(offset + 6, "unsupported .npy format version " + std::to_string(major));
    const std::size_t header_start = major == 1 ? 10 : 12;
    if (length < header_start) {
        reader.fail(offset, "truncated: an .npy entry of " + std::to_string(length) + " bytes has no complete header");
    }
    const std::size_t header_length = major == 1 ? std::size_t{reader.get<std::uint16_t>(offset + 8, "the .npy header length")}
                                                 : std::size_t{reader.get<std::uint32_t>(offset + 8, "the .npy header length")};
    if (header_start + header_length > length) {
        reader.fail(offset + 8, "truncated: the .npy header of " + std::to_string(header_length) +
                                    " bytes runs past the entry's " + std::to_string(length) + " bytes");
    }
    const std::size_t header_offset = offset + header_start;
    const NpyHeader header =
        HeaderParser(reader, npy.substr(header_start, header_length), header_offset).parse();
    if (header.fortran_order) reader.fail(header_offset, "Fortran-order arrays are not supported");

    std::size_t itemsize = 0;
    NpyArray (*make)(const Shape&, std::string_view) = nullptr;
    if (header.descr == Dtype<float>::descr) {
        itemsize = sizeof(float);
        make = array_from<float>;
    } else if (header.descr == Dtype<double>::descr) {
        itemsize = sizeof(double);
        make = array_from<double>;
    } else if (header.descr == Dtype<std::int64_t>::descr) {
        itemsize = sizeof(std::int64_t);
        make = array_from<std::int64_t>;
    } else {
        reader.fail(header_offset, "unsupported dtype '" + header.descr + "' (xgrad reads '<f4', '<f8' and '<i8')");
    }
    // The nonzero dimensions' product must be addressable even when another dimension is 0: xtensor
    // computes the strides from it in signed arithmetic (and numpy refuses such a shape too).
    std::size_t nonzero_product = 1;
    for (std::size_t d : header.shape) {
        if (d == 0) continue;
        if (nonzero_product > static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) / d / itemsize) {
            reader.fail(header_offset, "shape " + shape_str(header.shape) + " is too large");
        }
        nonzero_product *= d;
    }
    const bool empty = std::find(header.shape.begin(), header.shape.end(), std::size_t{0}) != header.shape.end();
    const std::size_t count = empty ? 0 : nonzero_product;
    const std::size_t data_offset = header_start + header_length;
    const std::size_t data_bytes = length - data_offset;
    if (data_bytes != count * itemsize) {
        reader.fail(offset + data_offset, "the data has " + std::to_string(data_bytes) + " bytes, shape " +
                                              shape_str(header.shape) + " of " + header.descr + " needs " +
                                              std::to_string(count * itemsize));
    }
    return make(header.shape, npy.substr(data_offset));
}

// The end-of-central-directory record: the last 22 bytes, unless the archive has a comment.
std::size_t find_end_of_central_directory(const Reader& reader) {
    if (reader.size() < end_of_central_directory_size) {
        reader.fail(reader.size(), "truncated: " + std::to_string(reader.size()) + " bytes is too short for a zip archive");
    }
    const std::size_t last = reader.size() - end_of_central_directory_size;
    const std::size_t first = last > 0xffff ? last - 0xffff : 0;
    for (std::size_t pos = last + 1; pos-- > first;) {
        if (reader.get<std::uint32_t>(pos, "the end record") == end_of_central_directory_signature &&
            pos + end_of_central_directory_size + reader.get<std::uint16_t>(pos + 20, "the comment length") == reader.size()) {
            return pos;
        }
    }
    reader.fail(last, "not a zip archive, or truncated: no end-of-central-directory record");
}

}  // namespace

std::string_view dtype_name(const NpyArray& array) {
    return std::visit([](const auto& a) { return Dtype<typename std::decay_t<decltype(a)>::value_type>::name; }, array);
}

void Npz::add(std::string name, NpyArray array) {
    if (name.empty()) throw std::invalid_argument("npz: an array needs a name");
    if (find(name)) throw std::invalid_argument("npz: two arrays named '" + name + "'");
    entries_.emplace_back(std::move(name), std::move(array));
}

const NpyArray* Npz::find(std::string_view name) const {
    for (const auto& [n, a] : entries_) {
        if (n == name) return &a;
    }
    return nullptr;
}

std::string npz_bytes(const Npz& npz) {
    std::string out;
    std::string central;
    for (const auto& [name, array] : npz.entries()) {
        const std::string entry_name = name + ".npy";
        const std::string data = std::visit([](const auto& a) { return npy_entry(a); }, array);
        const auto name_length = checked_zip_field<std::uint16_t>(entry_name.size(), "an entry name");
        const auto size = checked_zip_field<std::uint32_t>(data.size(), "an array");
        const auto offset = checked_zip_field<std::uint32_t>(out.size(), "the archive");
        const std::uint32_t crc = crc32_of(data);

        put(out, local_header_signature);
        put_common_fields(out, crc, size, name_length);
        put<std::uint16_t>(out, 0);  // extra field length
        out += entry_name;
        out += data;

        put(central, central_header_signature);
        put(central, made_by_unix);
        put_common_fields(central, crc, size, name_length);
        put<std::uint16_t>(central, 0);  // extra field length
        put<std::uint16_t>(central, 0);  // comment length
        put<std::uint16_t>(central, 0);  // disk number
        put<std::uint16_t>(central, 0);  // internal attributes
        put(central, regular_file_0644);
        put(central, offset);
        central += entry_name;
    }
    const auto entries = checked_zip_field<std::uint16_t>(npz.entries().size(), "the number of arrays");
    const auto central_offset = checked_zip_field<std::uint32_t>(out.size(), "the archive");
    const auto central_size = checked_zip_field<std::uint32_t>(central.size(), "the central directory");
    out += central;
    put(out, end_of_central_directory_signature);
    put<std::uint16_t>(out, 0);  // this disk
    put<std::uint16_t>(out, 0);  // the disk with the central directory
    put(out, entries);           // on this disk
    put(out, entries);           // in all
    put(out, central_size);
    put(out, central_offset);
    put<std::uint16_t>(out, 0);  // comment length
    return out;
}

void save_npz(const std::filesystem::path& path, const Npz& npz) { write_file_atomically(path, npz_bytes(npz)); }

Npz parse_npz(std::string_view bytes, const std::string& source, NpzCrc crc_check) {
    Reader reader(bytes, source);
    if (bytes.size() >= 4) {
        const auto first = reader.get<std::uint32_t>(0, "the signature");
        if (first != local_header_signature && first != end_of_central_directory_signature) {
            reader.fail(0, "not a zip archive (bad signature " + Reader::hex(first) + ")");
        }
    }
    const std::size_t end = find_end_of_central_directory(reader);
    const auto disk = reader.get<std::uint16_t>(end + 4, "the end record");
    const auto central_disk = reader.get<std::uint16_t>(end + 6, "the end record");
    const auto entries_here = reader.get<std::uint16_t>(end + 8, "the end record");
    const auto entries = reader.get<std::uint16_t>(end + 10, "the end record");
    const auto central_size = reader.get<std::uint32_t>(end + 12, "the end record");
    const auto central_offset = reader.get<std::uint32_t>(end + 16, "the end record");
    if (disk != 0 || central_disk != 0 || entries_here != entries) reader.fail(end, "multi-disk zip archives are not supported");
    if (entries == 0xffff || central_size == 0xffffffff || central_offset == 0xffffffff) {
        reader.fail(end, "zip64 archives are not supported");
    }
    if (std::size_t{central_offset} + central_size > end) {
        reader.fail(end + 12, "truncated: the central directory (" + std::to_string(central_size) + " bytes at byte " +
                                  std::to_string(central_offset) + ") overlaps its end record at byte " + std::to_string(end));
    }

    Npz npz;
    std::size_t pos = central_offset;
    for (std::size_t i = 0; i < entries; ++i) {
        reader.set_entry("");
        reader.expect_signature(pos, central_header_signature, "a central directory header");
        const auto flags = reader.get<std::uint16_t>(pos + 8, "a central directory header");
        const auto method = reader.get<std::uint16_t>(pos + 10, "a central directory header");
        const auto crc = reader.get<std::uint32_t>(pos + 16, "a central directory header");
        const auto compressed_size = reader.get<std::uint32_t>(pos + 20, "a central directory header");
        const auto size = reader.get<std::uint32_t>(pos + 24, "a central directory header");
        const auto name_length = reader.get<std::uint16_t>(pos + 28, "a central directory header");
        const auto extra_length = reader.get<std::uint16_t>(pos + 30, "a central directory header");
        const auto comment_length = reader.get<std::uint16_t>(pos + 32, "a central directory header");
        const auto local_offset = reader.get<std::uint32_t>(pos + 42, "a central directory header");
        const std::string entry(reader.slice(pos + central_header_size, name_length, "an entry name"));
        reader.set_entry(entry);
        if (flags & 1) reader.fail(pos + 8, "encrypted entries are not supported");
        if (method != 0) {
            reader.fail(pos + 10, "compressed entry (method " + std::to_string(method) +
                                      "); xgrad reads stored entries, as numpy.savez writes them (not savez_compressed)");
        }
        if (size == 0xffffffff || local_offset == 0xffffffff) reader.fail(pos + 24, "zip64 entries are not supported");
        if (compressed_size != size) reader.fail(pos + 20, "a stored entry whose compressed and uncompressed sizes differ");
        if (entry.size() < 4 || entry.substr(entry.size() - 4) != ".npy") reader.fail(pos + central_header_size, "not an .npy entry");

        reader.expect_signature(local_offset, local_header_signature, "a local file header");
        const auto local_name_length = reader.get<std::uint16_t>(local_offset + 26, "a local file header");
        const auto local_extra_length = reader.get<std::uint16_t>(local_offset + 28, "a local file header");
        const std::string_view local_name =
            reader.slice(local_offset + local_header_size, local_name_length, "a local file header");
        if (local_name != entry) {
            reader.fail(local_offset + local_header_size,
                        "the local header names '" + std::string(local_name) + "', the central directory '" + entry + "'");
        }
        const std::size_t data_offset = local_offset + local_header_size + local_name_length + local_extra_length;
        const std::string_view data = reader.slice(data_offset, size, "the entry's data");
        if (const std::uint32_t computed = crc32_of(data); crc_check == NpzCrc::verify && computed != crc) {
            reader.fail(data_offset, "CRC mismatch (the archive says " + Reader::hex(crc) + ", the data has " +
                                         Reader::hex(computed) + "): the file is corrupt");
        }
        std::string name = entry.substr(0, entry.size() - 4);
        if (npz.find(name)) reader.fail(pos, "a second entry with this name");
        npz.add(std::move(name), parse_npy(reader, data_offset, size));
        pos += central_header_size + name_length + extra_length + comment_length;
    }
    return npz;
}

Npz load_npz(const std::filesystem::path& path) {
    std::string bytes;
    try {
        bytes = read_regular_file(path);
    } catch (const UnreadableFile& e) {
        throw NpzError("npz " + path.string() + ": cannot read: " + e.reason());
    }
    return parse_npz(bytes, path.string());
}

}  // namespace xgrad
