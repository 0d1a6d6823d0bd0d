// The description of a run's model: which network, its normalization and that normalization's
// settings, and what the drivers vary around it (initialization, dropout, noise after the norm
// layers). make_model builds from it, TrainConfig holds it, and config.json records its fields
// under the keys of to_json below, which are the `xgrad train` flags' names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/flag_range.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/batch_renorm.hpp"

namespace xgrad {

// The normalization layer after each hidden Linear or Conv2d. A new one is a value here, its name
// in norm_names(), and its case in make_norm_layer (experiments/norm_activation.cpp).
enum class Norm { batch, batch_renorm, ghost, group, layer, instance, frn, none };

// Every Norm's name, in the enum's order: what `--norm` takes and config.json records.
const std::vector<std::string>& norm_names();
const std::string& norm_name(Norm norm);
// The Norm named `name`; std::invalid_argument listing the known names otherwise.
Norm parse_norm(const std::string& name);
// The `--bn on|off` spelling, and the BN-on/off arms of the drivers: batch when on, none when off.
Norm norm_from_bn(bool on);

// Batch Renorm's schedule as the flags set it: rmax and dmax start at 1 and 0 (BatchNorm), stay
// there for `warmup` steps, then rise linearly to `rmax` at step `rmax_at` and to `dmax` at step
// `dmax_at`; the running statistics move by `momentum`. Defaults are the paper's.
struct RenormSettings {
    double rmax = RenormSchedule{}.rmax_final;
    double dmax = RenormSchedule{}.dmax_final;
    std::int64_t warmup = RenormSchedule{}.relax_from;
    std::int64_t rmax_at = RenormSchedule{}.rmax_final_at;
    std::int64_t dmax_at = RenormSchedule{}.dmax_final_at;
    double momentum = BatchRenormOptions{}.momentum;

    BatchRenormOptions options() const;
};

// --bn-momentum's and config.json's word for ModelConfig::bn_momentum = nullopt.
inline constexpr const char* cumulative_momentum = "cumulative";

// ModelConfig::name of a model from a spec file (experiments/model_spec.hpp).
inline constexpr const char* spec_model_name = "spec";

struct ModelConfig {
    std::string name = "seed-cnn";  // experiments/models.hpp lists the models; spec_model_name for a spec's
    // The spec's JSON object when name is spec_model_name, null otherwise; where it was read from,
    // for the errors naming it (not recorded: a spec file renamed is the same model).
    nlohmann::json spec;
    std::string spec_source;
    Norm norm = Norm::batch;
    // Norm::group: the groups of every GroupNorm layer (Wu & He's 32). A layer whose channels it
    // does not divide is an error, never another G.
    std::size_t norm_groups = 32;
    // Norm::ghost: the samples of each virtual batch; 0, not given, is an error for Norm::ghost.
    std::size_t ghost_batch = 0;
    // Norm::batch_renorm.
    RenormSettings renorm;
    // Norm::batch: the factor the running statistics move by at each batch; nullopt for their
    // cumulative average over every batch (torch's momentum=None).
    std::optional<double> bn_momentum = BatchNormOptions{}.momentum;
    // Weights from N(0, sigma) instead of torch's default init (biases then start at 0).
    std::optional<double> init_sigma;
    // Dropout probability after each hidden nonlinearity; 0 adds no Dropout layer.
    double dropout = 0.0;
    // A DistributionNoise layer after each norm layer (Santurkar et al.'s "noisy BN"); needs a norm.
    bool noisy_bn = false;
    // Norm::batch: SyncBatchNorm layers, whose training statistics are those of every rank's batch
    // in a data-parallel run (layers/normalization/sync_batch_norm.hpp); in one process, BatchNorm.
    bool sync_bn = false;
};

// A std::invalid_argument naming the flag and its valid range ("--norm-groups: expected a whole
// number >= 1; got 0") when a setting of config.norm is out of it; settings of other norms are
// not read. Each position's own constraints (G dividing its channels) are make_model's.
void check_norm_settings(const ModelConfig& config);

// The valid ranges of the model's numeric flags. Dropout of every unit (p = 1) would leave the
// layers after it nothing to learn from; the groups' and the virtual batch's upper bounds are the
// layers' channels and --batch, checked where those are known.
namespace model_range {
inline constexpr RealRange init_sigma = RealRange::above(0);
inline constexpr RealRange dropout = RealRange::closed_open(0, 1);
inline constexpr WholeRange norm_groups = WholeRange::at_least(1);
inline constexpr WholeRange ghost_batch = WholeRange::at_least(2);
inline constexpr RealRange renorm_rmax = RealRange::at_least(1);
inline constexpr RealRange renorm_dmax = RealRange::at_least(0);
inline constexpr RealRange renorm_momentum = RealRange::open_closed(0, 1);
inline constexpr RealRange bn_momentum = RealRange::open_closed(0, 1);
}  // namespace model_range

// check_norm_settings, and --init-sigma and --dropout against their ranges: the same
// std::invalid_argument naming the flag and its range.
void check_model_config(const ModelConfig& config);

// The keys config.json records: model, model_spec (the spec's object, for a spec model only), norm, the settings of that norm only (norm_groups;
// ghost_batch; bn_momentum, a number or "cumulative", only when not torch's 0.1; renorm_rmax, renorm_dmax, renorm_warmup, renorm_rmax_at, renorm_dmax_at,
// renorm_momentum), init_sigma, dropout, and noisy_bn and sync_bn only when on. Runs begun before a key
// existed lack it and still match (train_config.hpp's first_difference).
nlohmann::json to_json(const ModelConfig& config);
// The ModelConfig whose to_json is `json` (in today's keys: train_config.hpp's with_current_keys);
// a std::invalid_argument naming the key that is missing or of the wrong type. A spec model's
// spec_source is "model_spec", the key.
ModelConfig model_config_from_json(const nlohmann::json& json);

}  // namespace xgrad
