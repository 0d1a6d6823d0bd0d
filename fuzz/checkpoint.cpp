// Checkpoint loading (experiments/checkpoint.hpp) into a small model with BatchNorm, Dropout and
// Adam (fuzz/tiny_model.hpp), with the trainer's reads of its state, so that every key, shape,
// dtype and count check against a model is reached; entry CRCs are unchecked so that mutated
// arrays get that far. Bad input must be an NpzError or a CheckpointError.
#include "experiments/checkpoint.hpp"
#include "experiments/npz.hpp"
#include "fuzz/harness.hpp"
#include "fuzz/tiny_model.hpp"
#include "layers/adam.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // A fresh model per input, so that an input's outcome never depends on the inputs before it.
    const auto model = xgrad_fuzz::tiny_model();
    xgrad::Adam<float> optimizer(model->parameters());
    const std::string source = "fuzz/checkpoint.npz";
    try {
        const xgrad::Npz npz = xgrad::parse_npz(xgrad_fuzz::input_bytes(data, size), source, xgrad::NpzCrc::skip);
        xgrad::TrainerState trainer;
        xgrad::load_checkpoint(npz, source, *model, &optimizer, &trainer);
        trainer.get_count("step", 0, 1000, "the run's steps");
        trainer.get_real_at_least("seconds", 0);
        for (const auto& [name, child] : model->named_children()) {
            if (xgrad::Rng* generator = child->generator()) trainer.restore_rng("rng/" + name, *generator);
        }
    } catch (const xgrad::NpzError&) {
    } catch (const xgrad::CheckpointError&) {
    }
    return 0;
}
