// Checkpoint I/O: .npz round trips for every dtype and ranks 0-4, numpy reading our files and us
// reading numpy's, corrupt archives (every truncation and every flipped byte, bad signatures,
// unsupported dtypes, compressed entries, size mismatches) giving errors that name the file,
// entry and byte; checkpoints with torch's state_dict keys (checked by loading one into torch),
// the errors for a missing key, an unexpected key and a shape or dtype mismatch, resuming SGD,
// Adam and trainer state to the same result as an uninterrupted run; atomic writes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/autodiff.hpp"
#include "experiments/atomic_file.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/npz.hpp"
#include "layers/adam.hpp"
#include "layers/init.hpp"
#include "layers/linear.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/sequential.hpp"
#include "layers/sgd.hpp"
#include "tests/error_message.hpp"
#include "tests/temp_dir.hpp"

namespace {

using xgrad_test::error_of;
using xgrad_test::TempDir;

namespace fs = std::filesystem;
using xgrad::CheckpointError;
using xgrad::Npz;
using xgrad::NpzError;
using xgrad::Shape;

std::string read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

// ---- .npz ----

// Distinct values, negative ones included: -3, -1.5, 0, 1.5, ... for floats; -3, -2, ... for ints.
template <class T>
xt::xarray<T> sample(const Shape& shape) {
    auto a = xt::xarray<T>::from_shape(shape);
    for (std::size_t i = 0; i < a.size(); ++i) {
        a.flat(i) = std::is_floating_point_v<T> ? static_cast<T>(1.5 * (static_cast<double>(i) - 2.0))
                                                : static_cast<T>(static_cast<std::int64_t>(i) - 3);
    }
    return a;
}

const std::vector<Shape> shapes_rank_0_to_4 = {{}, {5}, {2, 3}, {2, 1, 3}, {1, 2, 3, 2}, {0, 3}};

template <class T>
class NpzRoundTrip : public TempDir {};
using Dtypes = ::testing::Types<float, double, std::int64_t>;
TYPED_TEST_SUITE(NpzRoundTrip, Dtypes);

// The entry names a0, a1, ...: built by append, since GCC 12 at -O3 reports a false -Wrestrict in
// the inlined `"a" + std::string`.
std::string entry_name(std::size_t i) { return std::string("a").append(std::to_string(i)); }

TYPED_TEST(NpzRoundTrip, EveryRankKeepsShapeDtypeAndValues) {
    Npz npz;
    for (std::size_t i = 0; i < shapes_rank_0_to_4.size(); ++i) npz.add(entry_name(i), sample<TypeParam>(shapes_rank_0_to_4[i]));
    const fs::path file = this->path("arrays.npz");
    xgrad::save_npz(file, npz);
    const Npz loaded = xgrad::load_npz(file);
    ASSERT_EQ(loaded.entries().size(), shapes_rank_0_to_4.size());
    for (std::size_t i = 0; i < shapes_rank_0_to_4.size(); ++i) {
        const auto& [name, array] = loaded.entries()[i];
        EXPECT_EQ(name, entry_name(i));
        const auto* a = std::get_if<xt::xarray<TypeParam>>(&array);
        ASSERT_NE(a, nullptr) << name << " came back as " << xgrad::dtype_name(array);
        EXPECT_EQ(Shape(a->shape().begin(), a->shape().end()), shapes_rank_0_to_4[i]);
        EXPECT_EQ(*a, sample<TypeParam>(shapes_rank_0_to_4[i]));
    }
}

TEST(Npz, SameArraysGiveSameBytesAndDataIsAligned) {
    Npz npz;
    npz.add("w", sample<float>({3, 2}));
    const std::string bytes = xgrad::npz_bytes(npz);
    EXPECT_EQ(bytes, xgrad::npz_bytes(npz));
    // Local header (30 bytes) and "w.npy", then the .npy whose data starts 64-byte aligned.
    const std::size_t npy = 30 + 5;
    EXPECT_EQ(bytes.substr(npy, 6), "\x93NUMPY");
    std::uint16_t header_length;
    std::memcpy(&header_length, bytes.data() + npy + 8, 2);
    EXPECT_EQ((10 + header_length) % 64, 0u);
    const std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }";
    EXPECT_EQ(bytes.substr(npy + 10, header.size()), header);
}

TEST(Npz, DuplicateOrEmptyNamesAreRejected) {
    Npz npz;
    npz.add("x", sample<float>({1}));
    EXPECT_THROW(npz.add("x", sample<double>({1})), std::invalid_argument);
    EXPECT_THROW(npz.add("", sample<double>({1})), std::invalid_argument);
}

bool python_has(const char* module) {
    const std::string command = "/usr/bin/python3 -c 'import " + std::string(module) + "' >/dev/null 2>&1";
    return std::system(command.c_str()) == 0;
}

// Runs a Python script with `args`; true if it exited 0.
bool run_python(const fs::path& script_path, const std::string& script, const std::string& args) {
    write_bytes(script_path, script);
    const std::string command = "/usr/bin/python3 " + script_path.string() + " " + args;
    const int status = std::system(command.c_str());
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

class NpzWithNumpy : public TempDir {
protected:
    void SetUp() override {
        if (!python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
        TempDir::SetUp();
    }
};

// The same values as sample<T>, in numpy.
constexpr const char* numpy_sample = R"(
import sys
import numpy as np

def sample(dtype, shape):
    n = int(np.prod(shape))
    values = 1.5 * (np.arange(n) - 2.0) if dtype != np.int64 else np.arange(n) - 3
    return values.astype(dtype).reshape(shape)

shapes = [(), (5,), (2, 3), (2, 1, 3), (1, 2, 3, 2), (0, 3)]
dtypes = {'f4': np.float32, 'f8': np.float64, 'i8': np.int64}
)";

TEST_F(NpzWithNumpy, NumpyLoadsOurFile) {
    Npz npz;
    for (std::size_t i = 0; i < shapes_rank_0_to_4.size(); ++i) {
        const std::string n = std::to_string(i);
        npz.add("f4/" + n, sample<float>(shapes_rank_0_to_4[i]));
        npz.add("f8/" + n, sample<double>(shapes_rank_0_to_4[i]));
        npz.add("i8/" + n, sample<std::int64_t>(shapes_rank_0_to_4[i]));
    }
    xgrad::save_npz(path("ours.npz"), npz);
    const std::string check = std::string(numpy_sample) + R"(
with np.load(sys.argv[1]) as f:
    assert len(f.files) == 3 * len(shapes), f.files
    for code, dtype in dtypes.items():
        for i, shape in enumerate(shapes):
            a = f[f'{code}/{i}']
            expected = sample(dtype, shape)
            assert a.dtype == expected.dtype and a.shape == shape, (code, i, a.dtype, a.shape)
            assert np.array_equal(a, expected), (code, i, a)
)";
    EXPECT_TRUE(run_python(path("check.py"), check, path("ours.npz").string()));
}

TEST_F(NpzWithNumpy, WeLoadNumpysFile) {
    const std::string write = std::string(numpy_sample) + R"(
np.savez(sys.argv[1], **{f'{code}_{i}': sample(dtype, shape)
                         for code, dtype in dtypes.items() for i, shape in enumerate(shapes)})
)";
    ASSERT_TRUE(run_python(path("write.py"), write, path("numpy.npz").string()));
    const Npz npz = xgrad::load_npz(path("numpy.npz"));
    EXPECT_EQ(npz.entries().size(), 3 * shapes_rank_0_to_4.size());
    for (std::size_t i = 0; i < shapes_rank_0_to_4.size(); ++i) {
        const std::string n = std::to_string(i);
        const Shape& shape = shapes_rank_0_to_4[i];
        ASSERT_TRUE(npz.find("f4_" + n) && npz.find("f8_" + n) && npz.find("i8_" + n)) << n;
        EXPECT_EQ(std::get<xt::xarray<float>>(*npz.find("f4_" + n)), sample<float>(shape));
        EXPECT_EQ(std::get<xt::xarray<double>>(*npz.find("f8_" + n)), sample<double>(shape));
        EXPECT_EQ(std::get<xt::xarray<std::int64_t>>(*npz.find("i8_" + n)), sample<std::int64_t>(shape));
    }
}

// ---- corrupt archives ----

// A one-entry archive "x.npy" holding a (2, 3) float32 array, and where its parts are.
struct OneEntry {
    std::string bytes = [] {
        Npz npz;
        npz.add("x", sample<float>({2, 3}));
        return xgrad::npz_bytes(npz);
    }();
    static constexpr std::size_t npy = 30 + 5;           // after the local header and the name
    static constexpr std::size_t header = npy + 10;      // the .npy header dict
    static constexpr std::size_t data = npy + 128;       // the header padded to 128 bytes
    std::size_t central() const { return bytes.size() - 22 - 46 - 5; }

    // Edits the .npy entry and fixes the CRCs, so only the edit is wrong.
    void edit_npy(const std::string& from, const std::string& to) {
        const std::size_t at = bytes.find(from, npy);
        ASSERT_NE(at, std::string::npos);
        ASSERT_EQ(from.size(), to.size());
        bytes.replace(at, from.size(), to);
        std::uint32_t size;
        std::memcpy(&size, bytes.data() + 22, 4);
        const auto crc = static_cast<std::uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data() + npy), size));
        std::memcpy(bytes.data() + 14, &crc, 4);
        std::memcpy(bytes.data() + central() + 16, &crc, 4);
    }
};

class CorruptNpz : public TempDir {
protected:
    // The NpzError that loading `bytes` from a file gives.
    std::string load_error(const std::string& bytes) {
        write_bytes(path("bad.npz"), bytes);
        return error_of<NpzError>([&] { xgrad::load_npz(path("bad.npz")); });
    }
    std::string file() const { return "npz " + path("bad.npz").string(); }
};

TEST_F(CorruptNpz, MissingFile) {
    EXPECT_EQ(error_of<NpzError>([&] { xgrad::load_npz(path("none.npz")); }),
              "npz " + path("none.npz").string() + ": cannot read: No such file or directory");
}

TEST_F(CorruptNpz, BadSignature) {
    EXPECT_EQ(load_error("this is not a zip archive at all"), file() + " at byte 0: not a zip archive (bad signature 0x73696874)");
}

TEST_F(CorruptNpz, TruncatedAtEveryLengthIsAnError) {
    const OneEntry good;
    for (std::size_t n = 0; n < good.bytes.size(); ++n) {
        EXPECT_NO_FATAL_FAILURE({
            const std::string message = error_of<NpzError>([&] { xgrad::parse_npz(good.bytes.substr(0, n), "cut"); });
            EXPECT_EQ(message.rfind("npz cut", 0), 0u) << n << ": " << message;
        });
    }
    EXPECT_EQ(load_error(good.bytes.substr(0, 60)),
              file() + " at byte 38: not a zip archive, or truncated: no end-of-central-directory record");
}

TEST_F(CorruptNpz, EveryFlippedByteIsAnErrorOrHarmless) {
    const OneEntry good;
    for (std::size_t i = 0; i < good.bytes.size(); ++i) {
        std::string bad = good.bytes;
        bad[i] = static_cast<char>(bad[i] ^ 0x5a);
        try {
            xgrad::parse_npz(bad, "flipped");
        } catch (const NpzError&) {
        }
    }
}

TEST_F(CorruptNpz, UnsupportedDtype) {
    OneEntry e;
    e.edit_npy("'<f4'", "'<i4'");
    EXPECT_EQ(load_error(e.bytes), file() + ": entry 'x.npy' at byte " + std::to_string(OneEntry::header) +
                                       ": unsupported dtype '<i4' (xgrad reads '<f4', '<f8' and '<i8')");
}

TEST_F(CorruptNpz, ShapeDoesNotFitTheData) {
    OneEntry e;
    e.edit_npy("(2, 3)", "(2, 4)");
    EXPECT_EQ(load_error(e.bytes), file() + ": entry 'x.npy' at byte " + std::to_string(OneEntry::data) + ": the data has 24 bytes, shape (2, 4) of <f4 needs 32");
}

TEST_F(CorruptNpz, FortranOrder) {
    OneEntry e;
    e.edit_npy("False", "True ");
    EXPECT_EQ(load_error(e.bytes), file() + ": entry 'x.npy' at byte " + std::to_string(OneEntry::header) +
                                       ": Fortran-order arrays are not supported");
}

TEST_F(CorruptNpz, CompressedEntry) {
    OneEntry e;
    e.bytes[e.central() + 10] = 8;  // method: deflate
    EXPECT_EQ(load_error(e.bytes), file() + ": entry 'x.npy' at byte " + std::to_string(e.central() + 10) +
                                       ": compressed entry (method 8); xgrad reads stored entries, as numpy.savez writes "
                                       "them (not savez_compressed)");
}

TEST_F(CorruptNpz, DamagedData) {
    OneEntry e;
    e.bytes[e.central() - 1] ^= 1;  // the last data byte
    const std::string message = load_error(e.bytes);
    EXPECT_EQ(message.rfind(file() + ": entry 'x.npy' at byte 35: CRC mismatch", 0), 0u) << message;
}

// ---- checkpoints ----

using Model = xgrad::Sequential<float>;

// fc1 -> bn1 -> fc2, named as torch would name the attributes of the same model.
std::shared_ptr<Model> small_model(std::uint64_t seed, std::size_t in = 4, bool batch_norm = true) {
    xgrad::Rng rng(seed);
    auto m = std::make_shared<Model>();
    m->add("fc1", std::make_shared<xgrad::Linear<float>>(in, 3, true, rng));
    if (batch_norm) m->add("bn1", std::make_shared<xgrad::BatchNorm1d<float>>(3));
    m->add("fc2", std::make_shared<xgrad::Linear<float>>(3, 2, true, rng));
    return m;
}

xt::xarray<float> batch(std::uint64_t seed, std::size_t in = 4) {
    xgrad::Rng rng(seed);
    auto x = xt::xarray<float>::from_shape({5, in});
    xgrad::normal_(x, 0.0, 1.0, rng);
    return x;
}

// One training step on a quadratic loss of the output.
void train_step(Model& model, xgrad::Optimizer<float>& optimizer, std::uint64_t seed) {
    optimizer.zero_grad();
    const xgrad::Var<float> y = model(xgrad::Var<float>(batch(seed)));
    xgrad::mean(y * y).backward();
    optimizer.step();
}

std::vector<xt::xarray<float>> tensors(const Model& model) {
    std::vector<xt::xarray<float>> out;
    for (const auto& [name, p] : model.named_parameters()) out.push_back(p.value());
    for (const auto& [name, b] : model.named_buffers()) {
        if (b.tensor) out.push_back(*b.tensor);
    }
    return out;
}

std::int64_t batches_tracked(const Model& model) {
    for (const auto& [name, b] : model.named_buffers()) {
        if (b.counter) return *b.counter;
    }
    return -1;
}

using Checkpoint = TempDir;

TEST_F(Checkpoint, HasTorchsStateDictKeysShapesAndDtypes) {
    auto model = small_model(1);
    xgrad::save_checkpoint(path("c.npz"), *model);
    const Npz npz = xgrad::load_npz(path("c.npz"));
    std::vector<std::string> keys;
    for (const auto& [name, array] : npz.entries()) keys.push_back(name);
    EXPECT_EQ(keys, (std::vector<std::string>{"fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                              "bn1.running_var", "bn1.num_batches_tracked", "fc2.weight", "fc2.bias"}));
    EXPECT_EQ(std::get<xt::xarray<float>>(*npz.find("fc1.weight")).shape().size(), 2u);
    EXPECT_EQ(std::get<xt::xarray<float>>(*npz.find("fc1.weight")).shape()[1], 4u);
    const auto& counter = std::get<xt::xarray<std::int64_t>>(*npz.find("bn1.num_batches_tracked"));
    EXPECT_EQ(counter.dimension(), 0u);
}

TEST_F(Checkpoint, RoundTripsParametersBuffersAndCounter) {
    auto model = small_model(1);
    for (std::uint64_t s = 0; s < 3; ++s) (*model)(xgrad::Var<float>(batch(s)));  // moves the running statistics
    model->named_parameters()[0].second.mutable_value()(0, 0) = 42.0f;
    xgrad::save_checkpoint(path("c.npz"), *model);

    auto loaded = small_model(2);
    xgrad::load_checkpoint(path("c.npz"), *loaded);
    EXPECT_EQ(tensors(*loaded), tensors(*model));
    EXPECT_EQ(batches_tracked(*loaded), 3);
}

class CheckpointWithTorch : public TempDir {
protected:
    void SetUp() override {
        if (!python_has("torch")) GTEST_SKIP() << "/usr/bin/python3 with torch is not available";
        TempDir::SetUp();
    }
};

TEST_F(CheckpointWithTorch, TorchLoadsItStrictlyAndComputesTheSameOutput) {
    auto model = small_model(1);
    for (std::uint64_t s = 0; s < 3; ++s) (*model)(xgrad::Var<float>(batch(s)));
    model->eval();
    const xt::xarray<float> x = batch(7);
    Npz io;
    io.add("x", x);
    io.add("y", (*model)(xgrad::Var<float>(x)).value());
    xgrad::save_npz(path("io.npz"), io);
    xgrad::TrainerState trainer;
    trainer.set_int("step", 3);
    xgrad::save_checkpoint(path("c.npz"), *model, nullptr, &trainer);

    const std::string check = R"(
import sys
from collections import OrderedDict
import numpy as np
import torch
model = torch.nn.Sequential(OrderedDict(fc1=torch.nn.Linear(4, 3), bn1=torch.nn.BatchNorm1d(3), fc2=torch.nn.Linear(3, 2)))
with np.load(sys.argv[1]) as f:
    state = {k: torch.from_numpy(f[k]) for k in f.files if not k.startswith(('optimizer/', 'trainer/'))}
assert list(state) == list(model.state_dict()), (list(state), list(model.state_dict()))
model.load_state_dict(state, strict=True)
assert model.bn1.num_batches_tracked.item() == 3
model.eval()
with np.load(sys.argv[2]) as io, torch.no_grad():
    y = model(torch.from_numpy(io['x'])).numpy()
    assert np.allclose(y, io['y'], rtol=1e-5, atol=1e-6), (y, io['y'])
)";
    EXPECT_TRUE(run_python(path("check.py"), check, path("c.npz").string() + " " + path("io.npz").string()));
}

TEST_F(Checkpoint, ShapeMismatchNamesKeyAndBothShapesAndChangesNothing) {
    xgrad::save_checkpoint(path("c.npz"), *small_model(1, 4));
    auto other = small_model(2, 5);
    const auto before = tensors(*other);
    EXPECT_EQ(error_of<CheckpointError>([&] { xgrad::load_checkpoint(path("c.npz"), *other); }),
              "checkpoint " + path("c.npz").string() + ": 'fc1.weight' has shape (3, 4), the model expects (3, 5)");
    EXPECT_EQ(tensors(*other), before);
}

TEST_F(Checkpoint, MissingKey) {
    xgrad::save_checkpoint(path("c.npz"), *small_model(1, 4, false));
    auto with_bn = small_model(2);
    EXPECT_EQ(error_of<CheckpointError>([&] { xgrad::load_checkpoint(path("c.npz"), *with_bn); }),
              "checkpoint " + path("c.npz").string() + ": missing key 'bn1.weight'");
}

TEST_F(Checkpoint, UnexpectedKey) {
    xgrad::save_checkpoint(path("c.npz"), *small_model(1));
    auto without_bn = small_model(2, 4, false);
    EXPECT_EQ(error_of<CheckpointError>([&] { xgrad::load_checkpoint(path("c.npz"), *without_bn); }),
              "checkpoint " + path("c.npz").string() +
                  ": unexpected key 'bn1.weight' (the model has no such parameter or buffer)");
}

TEST_F(Checkpoint, DtypeMismatch) {
    auto model = small_model(1);
    Npz npz;
    for (const auto& [name, p] : model->named_parameters()) npz.add(name, p.value());
    for (const auto& [name, b] : model->named_buffers()) {
        npz.add(name, b.tensor ? xgrad::NpyArray(*b.tensor) : xgrad::NpyArray(xt::xarray<float>(0.0f)));
    }
    xgrad::save_npz(path("c.npz"), npz);
    EXPECT_EQ(error_of<CheckpointError>([&] { xgrad::load_checkpoint(path("c.npz"), *model); }),
              "checkpoint " + path("c.npz").string() + ": 'bn1.num_batches_tracked' has dtype float32, the model expects int64");
}

TEST_F(Checkpoint, CorruptFileIsAnNpzError) {
    write_bytes(path("c.npz"), "PK\x03\x04 and then nothing");
    auto model = small_model(1);
    EXPECT_THROW(xgrad::load_checkpoint(path("c.npz"), *model), NpzError);
}

// Resuming from a checkpoint taken after 3 steps and taking 2 more ends exactly where 5
// uninterrupted steps end.
using MakeOptimizer = std::function<std::unique_ptr<xgrad::Optimizer<float>>(const Model&)>;

void expect_resume_matches(const fs::path& file, const MakeOptimizer& make_optimizer) {
    auto model = small_model(1);
    auto optimizer = make_optimizer(*model);
    for (std::uint64_t s = 0; s < 3; ++s) train_step(*model, *optimizer, s);
    xgrad::save_checkpoint(file, *model, optimizer.get());
    for (std::uint64_t s = 3; s < 5; ++s) train_step(*model, *optimizer, s);

    auto resumed = small_model(2);
    auto resumed_optimizer = make_optimizer(*resumed);
    xgrad::load_checkpoint(file, *resumed, resumed_optimizer.get());
    for (std::uint64_t s = 3; s < 5; ++s) train_step(*resumed, *resumed_optimizer, s);
    EXPECT_EQ(tensors(*resumed), tensors(*model));
    EXPECT_EQ(batches_tracked(*resumed), 5);
}

MakeOptimizer sgd = [](const Model& m) {
    return std::make_unique<xgrad::SGD<float>>(m.parameters(), xgrad::SgdOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
};
MakeOptimizer adam = [](const Model& m) { return std::make_unique<xgrad::Adam<float>>(m.parameters(), xgrad::AdamOptions{.lr = 0.01}); };

TEST_F(Checkpoint, ResumingSgdWithMomentumMatchesAnUninterruptedRun) { expect_resume_matches(path("c.npz"), sgd); }
TEST_F(Checkpoint, ResumingAdamMatchesAnUninterruptedRun) { expect_resume_matches(path("c.npz"), adam); }

TEST_F(Checkpoint, OptimizerStateOfAnotherKindIsRejected) {
    auto model = small_model(1);
    auto with_adam = adam(*model);
    train_step(*model, *with_adam, 0);
    xgrad::save_checkpoint(path("adam.npz"), *model, with_adam.get());
    auto with_sgd = sgd(*model);
    train_step(*model, *with_sgd, 0);
    xgrad::save_checkpoint(path("sgd.npz"), *model, with_sgd.get());

    const std::string adam_file = "checkpoint " + path("adam.npz").string();
    EXPECT_EQ(error_of<CheckpointError>([&] { xgrad::load_checkpoint(path("adam.npz"), *model, with_sgd.get()); }),
              adam_file + ": unexpected key 'optimizer/fc1.weight/step' (the optimizer has no such state)");
    EXPECT_EQ(error_of<CheckpointError>([&] { xgrad::load_checkpoint(path("sgd.npz"), *model, with_adam.get()); }),
              "checkpoint " + path("sgd.npz").string() + ": missing key 'optimizer/fc1.weight/step'");
    // Without an optimizer the optimizer's keys are not looked at.
    EXPECT_NO_THROW(xgrad::load_checkpoint(path("adam.npz"), *model));
}

// A forged count (Adam's steps of a parameter, a BN layer's batches) below zero is refused, naming
// the key, before anything changes.
TEST_F(Checkpoint, NegativeCountsAreRejectedNamingTheKeyAndChangeNothing) {
    auto model = small_model(1);
    auto optimizer = adam(*model);
    train_step(*model, *optimizer, 0);
    xgrad::save_checkpoint(path("c.npz"), *model, optimizer.get());
    const Npz saved = xgrad::load_npz(path("c.npz"));
    for (const std::string key : {"optimizer/fc2.bias/step", "bn1.num_batches_tracked"}) {
        Npz forged;
        for (const auto& [name, array] : saved.entries()) {
            forged.add(name, name == key ? xgrad::NpyArray(xt::xarray<std::int64_t>(-1)) : array);
        }
        auto fresh = small_model(2);
        auto fresh_optimizer = adam(*fresh);
        const auto before = tensors(*fresh);
        EXPECT_EQ(error_of<CheckpointError>([&] { xgrad::load_checkpoint(forged, "forged", *fresh, fresh_optimizer.get()); }),
                  "checkpoint forged: '" + key + "' is -1, expected a count of at least 0");
        EXPECT_EQ(tensors(*fresh), before);
        EXPECT_EQ(batches_tracked(*fresh), 0);
    }
}

TEST_F(Checkpoint, OptimizerOfOtherParametersIsRejected) {
    auto model = small_model(1);
    auto stranger = small_model(2);
    auto optimizer = adam(*stranger);
    EXPECT_THROW(xgrad::save_checkpoint(path("c.npz"), *model, optimizer.get()), std::invalid_argument);
    EXPECT_FALSE(fs::exists(path("c.npz")));
}

TEST_F(Checkpoint, TrainerStateRoundTripsIncludingGenerators) {
    xgrad::Rng rng(123);
    for (int i = 0; i < 1000; ++i) rng.uniform();  // somewhere in the middle of the engine's block
    xgrad::TrainerState state;
    state.set_int("step", 1234);
    state.set_int("epoch", 2);
    state.set_real("lr", 0.05);
    state.set_rng("shuffle_rng", rng);
    state.ints["order"] = xt::xarray<std::int64_t>{3, 1, 2};
    auto model = small_model(1);
    xgrad::save_checkpoint(path("c.npz"), *model, nullptr, &state);

    xgrad::TrainerState loaded;
    xgrad::load_checkpoint(path("c.npz"), *model, nullptr, &loaded);
    EXPECT_EQ(loaded.get_int("step"), 1234);
    EXPECT_EQ(loaded.get_int("epoch"), 2);
    EXPECT_EQ(loaded.get_real("lr"), 0.05);
    EXPECT_EQ(loaded.ints.at("order"), (xt::xarray<std::int64_t>{3, 1, 2}));
    xgrad::Rng restored(0);
    loaded.restore_rng("shuffle_rng", restored);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(restored.next_seed(), rng.next_seed()) << i;

    const std::string file = "checkpoint " + path("c.npz").string();
    EXPECT_EQ(error_of<CheckpointError>([&] { loaded.get_int("batch"); }), file + ": missing key 'trainer/batch'");
    EXPECT_EQ(error_of<CheckpointError>([&] { loaded.get_int("order"); }), file + ": more than one value in 'trainer/order'");
    EXPECT_EQ(error_of<CheckpointError>([&] { loaded.restore_rng("order", restored); }),
              file + ": not a random generator state in 'trainer/order'");
    // A key of the other dtype (a forged file) is not "missing": its dtype is what is wrong.
    EXPECT_EQ(error_of<CheckpointError>([&] { loaded.get_int("lr"); }), file + ": 'trainer/lr' has dtype float64, expected int64");
    EXPECT_EQ(error_of<CheckpointError>([&] { loaded.get_real("step"); }), file + ": 'trainer/step' has dtype int64, expected float64");
    EXPECT_EQ(loaded.get_count("epoch", 0, 2, "the test's range"), 2u);
    EXPECT_EQ(error_of<CheckpointError>([&] { loaded.get_count("step", 0, 1000, "the run's steps"); }),
              file + ": 'trainer/step' is 1234, expected 0 to 1000 (the run's steps)");
    EXPECT_EQ(error_of<CheckpointError>([&] { loaded.get_count("epoch", 3, 3, "step 9"); }),
              file + ": 'trainer/epoch' is 2, expected 3 (step 9)");
}

// ---- atomic writes ----

using AtomicFile = TempDir;

TEST_F(AtomicFile, ReplacesTheFileAndLeavesNoTemporary) {
    xgrad::write_file_atomically(path("f.json"), "first, longer content");
    xgrad::write_file_atomically(path("f.json"), "second");
    EXPECT_EQ(read_bytes(path("f.json")), "second");
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST_F(AtomicFile, MissingDirectoryIsAnErrorNamingTheFile) {
    const std::string message = error_of<std::runtime_error>([&] { xgrad::write_file_atomically(path("no/f.json"), "x"); });
    EXPECT_EQ(message.rfind("cannot write '" + path("no/f.json").string() + "': create", 0), 0u) << message;
    EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
}

TEST_F(AtomicFile, FailedRenameKeepsTheTargetAndRemovesTheTemporary) {
    // A non-empty directory cannot be replaced by a file: the temporary is written, the rename fails.
    fs::create_directories(path("target") / "inside");
    const std::string message = error_of<std::runtime_error>([&] { xgrad::write_file_atomically(path("target"), "x"); });
    EXPECT_NE(message.find(": rename"), std::string::npos) << message;
    EXPECT_TRUE(fs::is_directory(path("target") / "inside"));
    EXPECT_FALSE(fs::exists(path("target.tmp")));
}

// Runs `f` in a child process as an unprivileged user (root may write into read-only
// directories); its exit status: 0 if `f` returned true, 1 if false, 2 if privileges could not be
// dropped.
int run_unprivileged(const std::function<bool()>& f) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        constexpr uid_t nobody = 65534;
        if (::geteuid() == 0 && (::setgid(nobody) != 0 || ::setuid(nobody) != 0)) ::_exit(2);
        ::_exit(f() ? 0 : 1);
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
    return WEXITSTATUS(status);
}

TEST_F(AtomicFile, UnwritableDirectoryLeavesTheOldFileAndNoTemporary) {
    fs::create_directories(path("ro"));
    xgrad::write_file_atomically(path("ro/f.json"), "old");
    fs::permissions(path("ro"), fs::perms::owner_read | fs::perms::owner_exec | fs::perms::others_read | fs::perms::others_exec);
    const int status = run_unprivileged([&] {
        try {
            xgrad::write_file_atomically(path("ro/f.json"), "new");
        } catch (const std::runtime_error& e) {
            return std::string(e.what()).find("Permission denied") != std::string::npos;
        }
        return false;
    });
    fs::permissions(path("ro"), fs::perms::owner_all);
    if (status == 2) GTEST_SKIP() << "cannot drop root privileges here";
    EXPECT_EQ(status, 0) << "no 'Permission denied' error";
    EXPECT_EQ(read_bytes(path("ro/f.json")), "old");
    EXPECT_FALSE(fs::exists(path("ro/f.json.tmp")));
}

TEST_F(AtomicFile, NpzWriteErrorLeavesThePreviousFile) {
    Npz npz;
    npz.add("x", sample<float>({2}));
    xgrad::save_npz(path("a.npz"), npz);
    EXPECT_THROW(xgrad::save_npz(path("missing/a.npz"), npz), std::runtime_error);
    EXPECT_EQ(xgrad::load_npz(path("a.npz")).entries().size(), 1u);
}

}  // namespace
