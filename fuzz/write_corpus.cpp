// Writes the seed corpora of the harnesses (fuzz/corpus/<harness>/) with the project's own
// writers: small valid files of every kind the readers take, a few kilobytes each.
//   build-asan/fuzz/write_corpus fuzz/corpus
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

#include "experiments/checkpoint.hpp"
#include "experiments/json_file.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/npz.hpp"
#include "experiments/train_config.hpp"
#include "fuzz/tiny_model.hpp"
#include "layers/adam.hpp"

namespace {

namespace fs = std::filesystem;

void write_bytes(const fs::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

void write_gzip(const fs::path& path, const std::string& bytes) {
    gzFile file = gzopen(path.c_str(), "wb9");
    if (!file || gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) != static_cast<int>(bytes.size()) ||
        gzclose(file) != Z_OK) {
        throw std::runtime_error("cannot write " + path.string());
    }
}

// An IDX file of unsigned bytes: magic 0x000008NN (NN dimensions), the dimensions, the data.
std::string idx_bytes(const std::vector<std::uint32_t>& dims) {
    std::string out{'\0', '\0', '\x08', static_cast<char>(dims.size())};
    std::size_t count = 1;
    for (std::uint32_t d : dims) {
        for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>(d >> shift & 0xff);
        count *= d;
    }
    for (std::size_t i = 0; i < count; ++i) out += static_cast<char>(i * 37 % 256);
    return out;
}

void write_idx(const fs::path& dir) {
    const std::string images = idx_bytes({3, 4, 4}), labels = idx_bytes({3});
    write_bytes(dir / "images.idx", images);
    write_bytes(dir / "labels.idx", labels);
    write_gzip(dir / "images.idx.gz", images);
    write_gzip(dir / "labels.idx.gz", labels);
}

void write_npz(const fs::path& dir) {
    xgrad::Npz npz;
    npz.add("weight", xt::xarray<float>{{1.5f, -2}, {0, 3}});
    npz.add("scalar", xt::xarray<double>(0.25));
    npz.add("counts", xt::xarray<std::int64_t>{1, -2, 3});
    npz.add("empty", xt::xarray<float>::from_shape({0, 3}));
    xgrad::save_npz(dir / "arrays.npz", npz);
}

// The tiny model's checkpoint with Adam's state after a step and a trainer's state.
void write_checkpoint(const fs::path& dir) {
    const auto model = xgrad_fuzz::tiny_model();
    xgrad::Adam<float> optimizer(model->parameters());
    for (std::size_t i = 0; i < optimizer.params().size(); ++i) {
        const auto& shape = optimizer.params()[i].shape();
        optimizer.state()[i] = {1, xt::zeros<float>(shape), xt::ones<float>(shape)};
    }
    xgrad::TrainerState trainer;
    trainer.set_int("step", 7);
    trainer.set_real("seconds", 1.5);
    for (const auto& [name, child] : model->named_children()) {
        if (xgrad::Rng* generator = child->generator()) trainer.set_rng("rng/" + name, *generator);
    }
    xgrad::save_checkpoint(dir / "checkpoint.npz", *model, &optimizer, &trainer);
}

void write_metrics(const fs::path& dir) {
    std::vector<xgrad::MetricsRow> rows(2);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        rows[i] = {.step = 100 * (i + 1), .epoch = i, .train_loss = 0.5 / (i + 1), .train_acc = 0.8, .test_loss = 0.6,
                   .test_acc = 0.75, .lr = 1e-3, .seconds = 2.5 * (i + 1), .extra = {{"grad_norm", 0.125}}};
    }
    write_bytes(dir / "metrics.csv", xgrad::metrics_csv(rows));
}

void write_json(const fs::path& dir) {
    xgrad::TrainConfig config;
    xgrad::write_json_file(dir / "config.json", xgrad::to_json(config));
    config.model.norm = xgrad::Norm::batch_renorm;
    xgrad::write_json_file(dir / "config-renorm.json", xgrad::to_json(config));
    xgrad::write_json_file(dir / "summary.json", {{"status", "finished"},
                                                  {"steps", 300},
                                                  {"seconds", 12.5},
                                                  {"final_test_acc", 0.8271},
                                                  {"config", xgrad::to_json(config)}});
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: write_corpus CORPUS_DIR\n";
        return 2;
    }
    const fs::path root = argv[1];
    for (const char* harness : {"npz", "idx", "metrics_csv", "json", "checkpoint"}) fs::create_directories(root / harness);
    write_npz(root / "npz");
    write_checkpoint(root / "checkpoint");
    fs::copy_file(root / "checkpoint" / "checkpoint.npz", root / "npz" / "checkpoint.npz", fs::copy_options::overwrite_existing);
    write_idx(root / "idx");
    write_metrics(root / "metrics_csv");
    write_json(root / "json");
    return 0;
}
