// Reader of IDX files, the format of MNIST and Fashion-MNIST: a big-endian header (magic
// 0x00000803 and (n, rows, cols) for images, 0x00000801 and (n) for labels) then unsigned bytes.
// Files may be gzip-compressed (every member's CRC-32 and length checked) or plain, and must be
// regular files. Every bad input throws std::runtime_error naming the file and, where it applies,
// the byte offset (in the decompressed data for a .gz file); a header is checked against the bytes
// present before its payload is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace xgrad {

struct IdxImages {
    std::size_t count = 0;
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::vector<std::uint8_t> pixels;  // count * rows * cols, image by image, row-major
};

IdxImages read_idx_images(const std::filesystem::path& path);

std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& path);

// The same from the bytes of a file (gzip or plain); `source` names it in errors.
IdxImages parse_idx_images(std::string_view file_bytes, const std::string& source);
std::vector<std::uint8_t> parse_idx_labels(std::string_view file_bytes, const std::string& source);

struct IdxLabelledImages {
    IdxImages images;
    std::vector<std::uint8_t> labels;
};

// Both files of a labelled set; throws when their counts differ.
IdxLabelledImages read_idx_labelled(const std::filesystem::path& images_path,
                                    const std::filesystem::path& labels_path);

}  // namespace xgrad
