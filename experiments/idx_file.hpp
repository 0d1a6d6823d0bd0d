// Reader of IDX files, the format of MNIST and Fashion-MNIST: a big-endian header (magic
// 0x00000803 and (n, rows, cols) for images, 0x00000801 and (n) for labels) then unsigned bytes.
// Files may be gzip-compressed or plain. Every bad input throws std::runtime_error naming the file
// and, where it applies, the byte offset (in the decompressed data for a .gz file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
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

struct IdxLabelledImages {
    IdxImages images;
    std::vector<std::uint8_t> labels;
};

// Both files of a labelled set; throws when their counts differ.
IdxLabelledImages read_idx_labelled(const std::filesystem::path& images_path,
                                    const std::filesystem::path& labels_path);

}  // namespace xgrad
