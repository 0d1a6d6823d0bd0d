// .npz files as numpy.savez writes them and numpy.load reads them: a ZIP archive (stored, not
// compressed) with one .npy entry (format 1.0) per named array. xgrad stores float32, float64 and
// int64 arrays of any rank, 0-d included; checkpoints are built on this.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <xtensor/xarray.hpp>

namespace xgrad {

// One array of an .npz; the alternative held is its dtype ('<f4', '<f8', '<i8').
using NpyArray = std::variant<xt::xarray<float>, xt::xarray<double>, xt::xarray<std::int64_t>>;

// numpy's name of the array's dtype: "float32", "float64" or "int64".
std::string_view dtype_name(const NpyArray& array);

// A malformed or unsupported .npz; the message names the file, the entry and the byte offset.
class NpzError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The arrays of an .npz by name, in the order they are stored. A name is the key numpy.load
// shows: the entry is "<name>.npy".
class Npz {
public:
    // A std::invalid_argument if `name` is empty or already present.
    void add(std::string name, NpyArray array);
    // Null if absent.
    const NpyArray* find(std::string_view name) const;
    const std::vector<std::pair<std::string, NpyArray>>& entries() const { return entries_; }

private:
    std::vector<std::pair<std::string, NpyArray>> entries_;
};

// The bytes of the .npz file holding `npz`. The same arrays always give the same bytes (every
// entry carries the same fixed timestamp).
std::string npz_bytes(const Npz& npz);
// Writes the file atomically (write_file_atomically).
void save_npz(const std::filesystem::path& path, const Npz& npz);

// Whether parse_npz checks each entry's CRC-32. Only the fuzzer (fuzz/npz.cpp) skips it, so that
// its mutations of an entry reach the .npy parser instead of stopping at the checksum.
enum class NpzCrc { verify, skip };

// Parses the bytes of an .npz; `source` names the file in errors. Throws NpzError for anything
// that is not such a file: a bad signature, a truncated archive or entry, a compressed entry, a
// CRC mismatch, an unsupported dtype or Fortran order, a data size that does not fit the shape.
Npz parse_npz(std::string_view bytes, const std::string& source, NpzCrc crc = NpzCrc::verify);
// Reads and parses the file; a file that cannot be read is an NpzError too.
Npz load_npz(const std::filesystem::path& path);

}  // namespace xgrad
