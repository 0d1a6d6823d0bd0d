#include "experiments/checkpoint.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "autodiff/shape.hpp"
#include "experiments/npz.hpp"
#include "layers/adam.hpp"
#include "layers/sgd.hpp"

namespace xgrad {
namespace {

constexpr std::string_view optimizer_prefix = "optimizer/";
constexpr std::string_view trainer_prefix = "trainer/";

// The model's parameters and buffers in torch's state_dict order: each module's own parameters,
// then its own buffers, then its children's, depth first.
std::vector<std::pair<std::string, BufferRef<float>>> model_state(const Module<float>& module, const std::string& prefix = "") {
    std::vector<std::pair<std::string, BufferRef<float>>> state;
    // A module's own entries are the ones without a dot; the dotted ones belong to its children.
    const auto own = [](const std::string& name) { return name.find('.') == std::string::npos; };
    for (auto& [name, p] : module.named_parameters()) {
        if (own(name)) state.emplace_back(prefix + name, BufferRef<float>{&p.mutable_value(), nullptr});
    }
    for (auto& [name, b] : module.named_buffers()) {
        if (own(name)) state.emplace_back(prefix + name, b);
    }
    for (const auto& [name, child] : module.named_children()) {
        for (auto& entry : model_state(*child, prefix + name + ".")) state.push_back(std::move(entry));
    }
    return state;
}

// The model's name of each of the optimizer's parameters, in the optimizer's order.
std::vector<std::string> optimizer_parameter_names(const Module<float>& model, const Optimizer<float>& optimizer) {
    const auto named = model.named_parameters();
    std::vector<std::string> names;
    for (const auto& p : optimizer.params()) {
        const auto it = std::find_if(named.begin(), named.end(), [&](const auto& np) { return np.second.node() == p.node(); });
        if (it == named.end()) {
            throw std::invalid_argument("checkpoint: the optimizer's parameter " + std::to_string(names.size()) +
                                        " is not a parameter of the model");
        }
        names.push_back(it->first);
    }
    return names;
}

std::string optimizer_key(const std::string& parameter, const char* field) {
    return std::string(optimizer_prefix) + parameter + "/" + field;
}

[[noreturn]] void unsupported_optimizer() {
    throw std::invalid_argument("checkpoint: only SGD and Adam optimizers have a saved state");
}

void add_optimizer_state(Npz& npz, const Module<float>& model, Optimizer<float>& optimizer) {
    const auto names = optimizer_parameter_names(model, optimizer);
    if (auto* sgd = dynamic_cast<SGD<float>*>(&optimizer)) {
        for (std::size_t i = 0; i < names.size(); ++i) {
            if (const auto& buffer = sgd->momentum_buffers()[i]) npz.add(optimizer_key(names[i], "momentum_buffer"), *buffer);
        }
    } else if (auto* adam = dynamic_cast<Adam<float>*>(&optimizer)) {
        for (std::size_t i = 0; i < names.size(); ++i) {
            const AdamState<float>& s = adam->state()[i];
            npz.add(optimizer_key(names[i], "step"), xt::xarray<std::int64_t>(s.step));
            if (s.step > 0) {
                npz.add(optimizer_key(names[i], "exp_avg"), s.exp_avg);
                npz.add(optimizer_key(names[i], "exp_avg_sq"), s.exp_avg_sq);
            }
        }
    } else {
        unsupported_optimizer();
    }
}

// Reads keys out of a loaded checkpoint with their checks, remembering which it used; the
// changes to make are queued and applied only once everything has been checked.
class Loader {
public:
    Loader(const Npz& npz, std::string source) : npz_(npz), source_(std::move(source)), used_(npz.entries().size()) {}

    [[noreturn]] void fail(const std::string& what) const { throw CheckpointError("checkpoint " + source_ + ": " + what); }

    bool has(const std::string& key) const { return npz_.find(key) != nullptr; }

    // The array under `key`, which must hold T in `shape`; `owner` says who expects it.
    template <class T>
    const xt::xarray<T>& take(const std::string& key, const Shape& shape, const char* owner) {
        const auto& entries = npz_.entries();
        const auto it = std::find_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first == key; });
        if (it == entries.end()) fail("missing key '" + key + "'");
        used_[static_cast<std::size_t>(it - entries.begin())] = true;
        const auto* array = std::get_if<xt::xarray<T>>(&it->second);
        if (!array) {
            fail("'" + key + "' has dtype " + std::string(dtype_name(it->second)) + ", " + owner + " expects " +
                 std::string(dtype_name(xt::xarray<T>())));
        }
        if (to_shape(array->shape()) != shape) {
            fail("'" + key + "' has shape " + shape_str(array->shape()) + ", " + owner + " expects " + shape_str(shape));
        }
        return *array;
    }

    // A count (batches tracked, optimizer steps) must not be negative.
    void check_count(const std::string& key, std::int64_t value) const {
        if (value < 0) fail("'" + key + "' is " + std::to_string(value) + ", expected a count of at least 0");
    }

    // Every key not yet taken whose name `belongs` is an error: the checkpoint has state the
    // model or optimizer lacks.
    template <class Pred>
    void reject_unused(Pred belongs, const char* what) const {
        for (std::size_t i = 0; i < used_.size(); ++i) {
            const std::string& key = npz_.entries()[i].first;
            if (!used_[i] && belongs(key)) fail("unexpected key '" + key + "' (" + what + ")");
        }
    }

    void then(std::function<void()> change) { changes_.push_back(std::move(change)); }
    void apply() const {
        for (const auto& change : changes_) change();
    }

private:
    const Npz& npz_;
    std::string source_;
    std::vector<bool> used_;
    std::vector<std::function<void()>> changes_;
};

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

void load_model_state(Loader& loader, Module<float>& model) {
    for (const auto& [name, ref] : model_state(model)) {
        if (ref.tensor) {
            const auto& value = loader.take<float>(name, to_shape(ref.tensor->shape()), "the model");
            loader.then([tensor = ref.tensor, &value] { *tensor = value; });
        } else {
            const auto& value = loader.take<std::int64_t>(name, {}, "the model");
            loader.check_count(name, value());
            loader.then([counter = ref.counter, &value] { *counter = value(); });
        }
    }
    loader.reject_unused([](const std::string& key) { return !starts_with(key, optimizer_prefix) && !starts_with(key, trainer_prefix); },
                         "the model has no such parameter or buffer");
}

void load_optimizer_state(Loader& loader, const Module<float>& model, Optimizer<float>& optimizer) {
    const auto names = optimizer_parameter_names(model, optimizer);
    const auto& params = optimizer.params();
    if (auto* sgd = dynamic_cast<SGD<float>*>(&optimizer)) {
        for (std::size_t i = 0; i < names.size(); ++i) {
            const std::string key = optimizer_key(names[i], "momentum_buffer");
            // A parameter gets its buffer on its first step with a gradient; before that it has none.
            const xt::xarray<float>* buffer = loader.has(key) ? &loader.take<float>(key, params[i].shape(), "the optimizer") : nullptr;
            loader.then([sgd, i, buffer] {
                auto& slot = sgd->momentum_buffers()[i];
                if (buffer) {
                    slot = *buffer;
                } else {
                    slot.reset();
                }
            });
        }
    } else if (auto* adam = dynamic_cast<Adam<float>*>(&optimizer)) {
        for (std::size_t i = 0; i < names.size(); ++i) {
            const std::string step_key = optimizer_key(names[i], "step");
            const std::int64_t step = loader.take<std::int64_t>(step_key, {}, "the optimizer")();
            loader.check_count(step_key, step);
            AdamState<float> state{step, {}, {}};
            if (step > 0) {
                state.exp_avg = loader.take<float>(optimizer_key(names[i], "exp_avg"), params[i].shape(), "the optimizer");
                state.exp_avg_sq = loader.take<float>(optimizer_key(names[i], "exp_avg_sq"), params[i].shape(), "the optimizer");
            }
            loader.then([adam, i, state = std::move(state)] { adam->state()[i] = state; });
        }
    } else {
        unsupported_optimizer();
    }
    loader.reject_unused([](const std::string& key) { return starts_with(key, optimizer_prefix); },
                         "the optimizer has no such state");
}

TrainerState load_trainer_state(const Npz& npz, const std::string& source) {
    TrainerState trainer;
    trainer.source = source;
    for (const auto& [key, array] : npz.entries()) {
        if (!starts_with(key, trainer_prefix)) continue;
        const std::string name = key.substr(trainer_prefix.size());
        if (const auto* ints = std::get_if<xt::xarray<std::int64_t>>(&array)) {
            trainer.ints[name] = *ints;
        } else if (const auto* reals = std::get_if<xt::xarray<double>>(&array)) {
            trainer.reals[name] = *reals;
        } else {
            throw CheckpointError("checkpoint " + source + ": '" + key + "' has dtype " + std::string(dtype_name(array)) +
                                  ", trainer state is int64 or float64");
        }
    }
    return trainer;
}

// Built by appending: GCC 12 reports a false -Wrestrict for "'" + std::string(...).
std::string trainer_key(const std::string& name) {
    std::string key(1, '\'');
    key.append(trainer_prefix).append(name).push_back('\'');
    return key;
}

[[noreturn]] void trainer_error(const TrainerState& state, const std::string& what) {
    const std::string where = state.source.empty() ? "trainer state" : "checkpoint " + state.source;
    throw CheckpointError(where + ": " + what);
}

// The arrays of T's dtype under `name`; an error saying so when the key is stored with the other
// dtype (a forged or foreign checkpoint), rather than calling it missing.
template <class T, class Other>
const xt::xarray<T>& trainer_array(const TrainerState& state, const std::map<std::string, xt::xarray<T>>& arrays,
                                   const std::map<std::string, xt::xarray<Other>>& others, const std::string& name) {
    const auto it = arrays.find(name);
    if (it != arrays.end()) return it->second;
    if (others.contains(name)) {
        trainer_error(state, trainer_key(name) + " has dtype " + std::string(dtype_name(xt::xarray<Other>())) + ", expected " +
                                 std::string(dtype_name(xt::xarray<T>())));
    }
    trainer_error(state, "missing key " + trainer_key(name));
}

template <class T>
T single_value(const TrainerState& state, const xt::xarray<T>& array, const std::string& name) {
    if (array.size() != 1) trainer_error(state, "more than one value in " + trainer_key(name));
    return array.flat(0);
}

}  // namespace

std::int64_t TrainerState::get_int(const std::string& name) const {
    return single_value(*this, trainer_array(*this, ints, reals, name), name);
}

double TrainerState::get_real(const std::string& name) const {
    return single_value(*this, trainer_array(*this, reals, ints, name), name);
}

std::size_t TrainerState::get_count(const std::string& name, std::size_t low, std::size_t high, const std::string& why) const {
    const std::int64_t value = get_int(name);
    if (value < 0 || static_cast<std::uint64_t>(value) < low || static_cast<std::uint64_t>(value) > high) {
        const std::string range = low == high ? std::to_string(low) : std::to_string(low) + " to " + std::to_string(high);
        trainer_error(*this, trainer_key(name) + " is " + std::to_string(value) + ", expected " + range + " (" + why + ")");
    }
    return static_cast<std::size_t>(value);
}

double TrainerState::get_real_at_least(const std::string& name, double low) const {
    const double value = get_real(name);
    if (!std::isfinite(value) || value < low) {
        std::ostringstream text;
        text << trainer_key(name) << " is " << value << ", expected a finite number of at least " << low;
        trainer_error(*this, text.str());
    }
    return value;
}

void TrainerState::set_rng(const std::string& name, Rng& rng) {
    // The standard library's text form of the engine is its full state, as unsigned words.
    std::stringstream text;
    text << rng.engine();
    std::vector<std::int64_t> words;
    for (std::uint64_t word; text >> word;) words.push_back(std::bit_cast<std::int64_t>(word));
    auto& array = ints[name] = xt::xarray<std::int64_t>::from_shape({words.size()});
    std::copy(words.begin(), words.end(), array.begin());
}

void TrainerState::restore_rng(const std::string& name, Rng& rng) const {
    std::stringstream text;
    for (std::int64_t word : trainer_array(*this, ints, reals, name)) text << std::bit_cast<std::uint64_t>(word) << ' ';
    std::mt19937_64 engine;
    text >> engine;
    if (!text || (text >> std::ws, !text.eof())) trainer_error(*this, "not a random generator state in " + trainer_key(name));
    rng.engine() = engine;
}

void save_checkpoint(const std::filesystem::path& path, const Module<float>& model, Optimizer<float>* optimizer,
                     const TrainerState* trainer) {
    Npz npz;
    for (const auto& [name, ref] : model_state(model)) {
        if (ref.tensor) {
            npz.add(name, *ref.tensor);
        } else {
            npz.add(name, xt::xarray<std::int64_t>(*ref.counter));
        }
    }
    if (optimizer) add_optimizer_state(npz, model, *optimizer);
    if (trainer) {
        for (const auto& [name, array] : trainer->ints) npz.add(std::string(trainer_prefix) + name, array);
        for (const auto& [name, array] : trainer->reals) npz.add(std::string(trainer_prefix) + name, array);
    }
    save_npz(path, npz);
}

void load_checkpoint(const std::filesystem::path& path, Module<float>& model, Optimizer<float>* optimizer, TrainerState* trainer) {
    load_checkpoint(load_npz(path), path.string(), model, optimizer, trainer);
}

void load_checkpoint(const Npz& npz, const std::string& source, Module<float>& model, Optimizer<float>* optimizer,
                     TrainerState* trainer) {
    Loader loader(npz, source);
    load_model_state(loader, model);
    if (optimizer) load_optimizer_state(loader, model, *optimizer);
    // Built aside and moved in last, like the loader's changes, so a failed load changes nothing.
    TrainerState loaded_trainer = trainer ? load_trainer_state(npz, source) : TrainerState{};
    loader.apply();
    if (trainer) *trainer = std::move(loaded_trainer);
}

}  // namespace xgrad
