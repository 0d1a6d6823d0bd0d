// Decompressing a gzip file (RFC 1952) held in memory: every member's header, deflate data and
// trailer, whose CRC-32 and length (ISIZE) are checked against the data decompressed, so that a
// file cut anywhere or with any bit flipped is an error rather than different data. The output
// grows with what inflate produces, never with what a header claims.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace xgrad {

// The CRC-32 of gzip and ZIP (ISO 3309), as their trailers and headers store it.
std::uint32_t crc32_of(std::string_view bytes);

// Whether `bytes` starts with the gzip magic number (0x1f 0x8b).
bool is_gzip(std::string_view bytes);

// The concatenated data of every member. A std::runtime_error starting "<source>: " says what
// failed (a bad header, corrupt deflate data, a CRC-32 or length mismatch, a file cut short, data
// after the last member) and at which byte offset of the file.
std::string gunzip(std::string_view bytes, const std::string& source);

}  // namespace xgrad
