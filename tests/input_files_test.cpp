// The files xgrad reads (checkpoints and other .npz, IDX data, config.json, summary.json,
// metrics.csv) before they cost anything: only regular files are read (a device such as /dev/zero
// never ends, a FIFO blocks), a JSON file of another type than an object, a metrics.csv of CRLF
// lines and a forged or out-of-range trainer state in a checkpoint are named clearly, through the
// readers and through the xgrad command line.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/address_sanitizer.hpp"
#include "autodiff/shape.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/idx_file.hpp"
#include "experiments/json_file.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/model_config.hpp"
#include "experiments/npz.hpp"
#include "experiments/train_config.hpp"
#include "layers/init.hpp"
#include "layers/linear.hpp"
#include "layers/sequential.hpp"
#include "tests/error_message.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using xgrad_test::error_of;
using xgrad_test::run_command;

using xgrad_test::TempDir;

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// The message of what `read` throws ("no exception" if nothing), run in a child process given 20
// seconds and, outside AddressSanitizer, 512 MiB more address space than it starts with: a reader
// that blocks on a FIFO or reads /dev/zero without end fails the test instead of hanging it or
// exhausting the machine.
std::string error_in_child(const std::function<void()>& read) {
    int channel[2];
    if (pipe(channel) != 0) return "pipe failed";
    const pid_t child = fork();
    if (child == 0) {
        close(channel[0]);
#ifndef XGRAD_ADDRESS_SANITIZER
        long pages = 0;
        std::ifstream("/proc/self/statm") >> pages;
        const auto limit = static_cast<rlim_t>(pages * sysconf(_SC_PAGESIZE)) + (rlim_t{512} << 20);
        const rlimit address_space{limit, limit};
        setrlimit(RLIMIT_AS, &address_space);
#endif
        std::string message = "no exception";
        try {
            read();
        } catch (const std::exception& e) {
            message = e.what();
        }
        [[maybe_unused]] const ssize_t written = write(channel[1], message.data(), message.size());
        _exit(0);
    }
    close(channel[1]);
    std::string message;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd ready{channel[0], POLLIN, 0};
        if (left.count() <= 0 || poll(&ready, 1, static_cast<int>(left.count())) == 0) {
            kill(child, SIGKILL);
            message = "timed out";
            break;
        }
        char buffer[512];
        const ssize_t n = ::read(channel[0], buffer, sizeof buffer);
        if (n <= 0) break;
        message.append(buffer, static_cast<std::size_t>(n));
    }
    close(channel[0]);
    waitpid(child, nullptr, 0);
    return message;
}

std::shared_ptr<xgrad::Sequential<float>> tiny_model() {
    xgrad::Rng rng(0);
    auto model = std::make_shared<xgrad::Sequential<float>>();
    model->add("fc", std::make_shared<xgrad::Linear<float>>(2, 2, true, rng));
    return model;
}

using SpecialFiles = TempDir;

TEST_F(SpecialFiles, EveryReaderRefusesDevicesAndFifos) {
    const fs::path fifo = dir / "fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    const std::vector<std::pair<const char*, std::function<void(const fs::path&)>>> readers = {
        {"npz", [](const fs::path& p) { xgrad::load_npz(p); }},
        {"checkpoint", [](const fs::path& p) { xgrad::load_checkpoint(p, *tiny_model()); }},
        {"idx", [](const fs::path& p) { xgrad::read_idx_labels(p); }},
        {"json", [](const fs::path& p) { xgrad::read_json_file(p); }},
        {"csv", [](const fs::path& p) { xgrad::read_metrics_csv(p); }},
    };
    for (const auto& [name, reader] : readers) {
        SCOPED_TRACE(name);
        for (const auto& [path, kind] : {std::pair{fs::path("/dev/zero"), "a character device"}, std::pair{fifo, "a FIFO"}}) {
            const std::string message = error_in_child([&, &reader = reader, &path = path] { reader(path); });
            EXPECT_NE(message.find(path.string()), std::string::npos) << message;
            EXPECT_NE(message.find(std::string("not a regular file (") + kind + ")"), std::string::npos) << message;
        }
    }
}

// `xgrad eval --checkpoint` given a device read it until memory ran out, given a FIFO waited forever.
TEST_F(SpecialFiles, EvalOfADeviceOrAFifoIsAClearError) {
    const fs::path fifo = dir / "fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    for (const auto& [path, kind] : {std::pair{fs::path("/dev/zero"), "a character device"}, std::pair{fifo, "a FIFO"}}) {
        // Bounded in time and, outside AddressSanitizer (whose shadow memory alone is terabytes of
        // address space), in memory, so that a reader without the check fails rather than hangs.
#ifdef XGRAD_ADDRESS_SANITIZER
        const std::string memory_cap;
#else
        const std::string memory_cap = "ulimit -v 4000000; ";
#endif
        const auto [status, output] = run_command(memory_cap + "timeout 60 " XGRAD_CLI
                                                  " eval --model paper-mlp --dataset synthetic --checkpoint " + path.string());
        EXPECT_NE(status, 0) << output;
        EXPECT_NE(output.find("npz " + path.string() + ": cannot read: not a regular file (" + kind + ")"), std::string::npos)
            << output;
    }
}

// ---- JSON files ----

using JsonFiles = TempDir;

TEST_F(JsonFiles, AnythingButAnObjectNamesTheFileAndTheType) {
    for (const auto& [text, type] : {std::pair{"[1, 2]", "array"}, std::pair{"\"finished\"", "string"}, std::pair{"3", "number"},
                                     std::pair{"null", "null"}}) {
        write_text(dir / "config.json", text);
        EXPECT_EQ(error_of([&] { xgrad::read_json_file(dir / "config.json"); }),
                  (dir / "config.json").string() + ": expected a JSON object ({...}), found " + type);
    }
    write_text(dir / "config.json", "{\"model\": ");
    EXPECT_EQ(error_of([&] { xgrad::read_json_file(dir / "config.json"); }).rfind((dir / "config.json").string() + ": not valid JSON", 0),
              0u);
}

// A two-step `xgrad train` on 64 synthetic images into `out`.
std::string tiny_train(const fs::path& out) {
    return std::string(XGRAD_CLI) + " train --model paper-mlp --dataset synthetic --synthetic-size 64 --batch 16 --steps 2 "
                                    "--eval-every 2 --threads 1 --out " + out.string();
}

TEST_F(JsonFiles, ARunsConfigOrSummaryOfTheWrongTypeIsNamedByTheCommandLine) {
    const fs::path run = dir / "run";
    ASSERT_EQ(run_command(tiny_train(run)).status, 0);
    write_text(run / "summary.json", "[\"finished\"]");
    const xgrad_test::CommandResult summary = run_command(tiny_train(run));
    EXPECT_NE(summary.status, 0);
    EXPECT_NE(summary.output.find((run / "summary.json").string() + ": expected a JSON object ({...}), found array"),
              std::string::npos)
        << summary.output;

    fs::remove(run / "summary.json");
    fs::remove(run / "config.json");
    fs::create_directory(run / "config.json");
    const xgrad_test::CommandResult config = run_command(tiny_train(run));
    EXPECT_NE(config.status, 0);
    EXPECT_NE(config.output.find("cannot read " + (run / "config.json").string() + ": not a regular file (a directory)"),
              std::string::npos)
        << config.output;
}

// ---- metrics.csv ----

using MetricsFiles = TempDir;

TEST_F(MetricsFiles, CrlfLineEndsReadAsLfOnes) {
    std::vector<xgrad::MetricsRow> rows(2);
    rows[0] = {.step = 10, .epoch = 0, .train_loss = 1.5, .train_acc = 0.25, .test_loss = 1.25, .test_acc = 0.5, .lr = 0.1,
               .seconds = 2.0, .extra = {{"p15", -1.0}}};
    rows[1] = rows[0];
    rows[1].step = 20;
    const std::string lf = xgrad::metrics_csv(rows);
    std::string crlf;
    for (const char c : lf) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    write_text(dir / "metrics.csv", crlf);
    const auto back = xgrad::read_metrics_csv(dir / "metrics.csv");
    ASSERT_EQ(back.size(), 2u);
    EXPECT_EQ(back[1].step, 20u);
    EXPECT_EQ(back[1].seconds, 2.0);
    EXPECT_EQ(back[1].at("p15"), -1.0);
    // A stray carriage return inside a line is still an error naming the file and the line.
    write_text(dir / "metrics.csv", lf.substr(0, lf.rfind(',')) + "\r,7\n");
    EXPECT_EQ(error_of([&] { xgrad::read_metrics_csv(dir / "metrics.csv"); }).rfind((dir / "metrics.csv").string() + ": line 3", 0), 0u);
}

// ---- trainer state in a checkpoint ----

// The run's checkpoint with every key ending in `suffix` holding `value`, its summary removed so
// that the run resumes; false if no key ends so.
bool forge(const fs::path& run, const std::string& suffix, const xgrad::NpyArray& value) {
    const xgrad::Npz saved = xgrad::load_npz(run / "checkpoint.npz");
    xgrad::Npz forged;
    bool found = false;
    for (const auto& [name, array] : saved.entries()) {
        const bool match = name.ends_with(suffix);
        found = found || match;
        forged.add(name, match ? value : array);
    }
    xgrad::save_npz(run / "checkpoint.npz", forged);
    fs::remove(run / "summary.json");
    return found;
}

using TrainerStateOnResume = TempDir;

TEST_F(TrainerStateOnResume, ResumingChecksEveryValueAgainstTheConfigurationNamingTheKey) {
    const fs::path run = dir / "run";
    ASSERT_EQ(run_command(tiny_train(run)).status, 0);
    const fs::path pristine = dir / "pristine.npz";
    fs::copy_file(run / "checkpoint.npz", pristine);
    // 64 images in batches of 16: 4 batches per epoch; the checkpoint is at step 2.
    const std::vector<std::tuple<std::string, xgrad::NpyArray, std::string>> cases = {
        {"trainer/step", xt::xarray<std::int64_t>(-1), "'trainer/step' is -1, expected 0 to 2 (the run's steps)"},
        {"trainer/step", xt::xarray<std::int64_t>(1'000'000'000), "'trainer/step' is 1000000000, expected 0 to 2 (the run's steps)"},
        {"trainer/step", xt::xarray<double>(2.0), "'trainer/step' has dtype float64, expected int64"},
        {"trainer/epoch", xt::xarray<std::int64_t>(7), "'trainer/epoch' is 7, expected 0 (step 2 at 4 batches per epoch)"},
        {"trainer/batch", xt::xarray<std::int64_t>(3), "'trainer/batch' is 3, expected 2 (step 2 at 4 batches per epoch)"},
        {"trainer/seconds", xt::xarray<double>(-5.0), "'trainer/seconds' is -5, expected a finite number of at least 0"},
        {"num_batches_tracked", xt::xarray<std::int64_t>(-3), "num_batches_tracked' is -3, expected a count of at least 0"},
    };
    for (const auto& [key, value, expected] : cases) {
        SCOPED_TRACE(key + ": " + expected);
        fs::copy_file(pristine, run / "checkpoint.npz", fs::copy_options::overwrite_existing);
        ASSERT_TRUE(forge(run, key, value));
        const auto [status, output] = run_command(tiny_train(run));
        EXPECT_NE(status, 0) << output;
        EXPECT_NE(output.find("checkpoint " + (run / "checkpoint.npz").string() + ": "), std::string::npos) << output;
        EXPECT_NE(output.find(expected), std::string::npos) << output;
        EXPECT_FALSE(fs::exists(run / "summary.json")) << output;
    }
}

// ---- inputs the fuzzers of fuzz/ found ----

// An .npz of one empty float32 array whose header claims `shape` instead of (0,), written over the
// header's padding; its CRC no longer matches, so it is parsed with NpzCrc::skip as the fuzzer does.
std::string npz_claiming_shape(const std::string& shape) {
    xgrad::Npz npz;
    npz.add("a", xt::xarray<float>::from_shape({0}));
    std::string bytes = xgrad::npz_bytes(npz);
    const std::string claim = "'shape': " + shape + ", }";
    bytes.replace(bytes.find("'shape': (0,), }"), claim.size(), claim);
    return bytes;
}

TEST(FuzzFindings, AnEmptyNpyArrayWithHugeOtherDimensionsIsRefused) {
    // 0 elements, but strides of 2^64: xtensor's signed stride arithmetic overflowed.
    const std::string error = error_of<xgrad::NpzError>([] {
        xgrad::parse_npz(npz_claiming_shape("(0, 4294967296, 4294967296)"), "claims.npz", xgrad::NpzCrc::skip);
    });
    EXPECT_NE(error.find("npz claims.npz: entry 'a.npy' at byte "), std::string::npos) << error;
    EXPECT_NE(error.find("shape (0, 4294967296, 4294967296) is too large"), std::string::npos) << error;
    // The same dimensions that fit stay readable.
    const xgrad::Npz npz = xgrad::parse_npz(npz_claiming_shape("(0, 65536, 65536)"), "fits.npz", xgrad::NpzCrc::skip);
    EXPECT_EQ(xgrad::shape_str(std::get<xt::xarray<float>>(npz.entries().at(0).second).shape()), "(0, 65536, 65536)");
}

TEST(FuzzFindings, AJsonNumberBeyondDoubleIsInvalidJsonNamingTheFile) {
    // nlohmann throws out_of_range, not parse_error, for it: it escaped as a raw nlohmann error.
    const std::string error = error_of<std::runtime_error>([] {
        xgrad::parse_json_object("{\"dataset\": 6e99999, \"batch\": 65}", "run/config.json");
    });
    EXPECT_EQ(error.rfind("run/config.json: not valid JSON: ", 0), 0u) << error;
    EXPECT_NE(error.find("6e99999"), std::string::npos) << error;
}

TEST(FuzzFindings, AWholeNumberKeyHoldingAFractionOrAValueBeyondItsTypeIsAnErrorNamingIt) {
    // 2555555555555555555000 is beyond 64 bits, so nlohmann reads it as a double, whose cast to the
    // key's integer was undefined behaviour (UBSan, in the json harness); 2.5 was cut to 2, and -1
    // for an unsigned count wrapped to 2^64 - 1.
    const struct {
        xgrad::Norm norm;
        const char* key;
        const char* value;
    } cases[] = {{xgrad::Norm::batch_renorm, "renorm_dmax_at", "2555555555555555555000"},
                 {xgrad::Norm::batch_renorm, "renorm_warmup", "2.5"},
                 {xgrad::Norm::ghost, "ghost_batch", "-1"}};
    for (const auto& [norm, key, value] : cases) {
        SCOPED_TRACE(key);
        xgrad::TrainConfig config;
        config.model.norm = norm;
        config.model.ghost_batch = 16;
        nlohmann::json json = xgrad::to_json(config);
        json[key] = nlohmann::json::parse(value);
        const std::string error = error_of<std::invalid_argument>([&] { xgrad::model_config_from_json(json); });
        EXPECT_NE(error.find(std::string("'") + key + "' is " + json[key].dump() + ", not a value of its type"),
                  std::string::npos)
            << error;
    }
}

// config.json's conv_backend is compared, never read as a string: another type is a difference.
TEST(FuzzFindings, AConvBackendOfAnotherTypeIsADifferenceNotAnError) {
    const nlohmann::json today = xgrad::to_json(xgrad::TrainConfig{});
    nlohmann::json recorded = today;
    recorded["conv_backend"] = 1;
    EXPECT_EQ(xgrad::first_difference(recorded, today), std::optional<std::string>("conv_backend"));
    recorded["conv_backend"] = "onednn";
    recorded["threads"] = 1;
    EXPECT_EQ(xgrad::first_difference(recorded, today), std::optional<std::string>("conv_backend"));
}

}  // namespace
