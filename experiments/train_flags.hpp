// The flags of `xgrad train`, defined once for the command line and for `xgrad sweep` (whose spec
// files name the same flags), with the validators and flag groups other commands share: each
// flag's range (flag_range.hpp) checked on its text, and the normalization flags' agreement.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "experiments/flag_range.hpp"
#include "experiments/train_config.hpp"

namespace xgrad {

// A flag's text against its range, before conversion, since an unsigned option would take -2 as
// 2^64 - 2: "--recalibrate: expected the number of training batches, a whole number from 1 to
// 1000000; got 0" (`what` names the value; may be empty). CLI11 prefixes the flag's name.
template <class Range>
CLI::Validator in_range(const Range& range, const std::string& what = "") {
    return CLI::Validator(
        [range, what](const std::string& input) -> std::string {
            if (range.admits(input)) return {};
            // CLI11 takes the argument after a flag as its value even when it is the next flag.
            const std::string given = input.starts_with("--") ? input + ", the next flag (the value is missing)" : input;
            return "expected " + (what.empty() ? "" : what + ", ") + range.words() + "; got " + given;
        },
        range.words());
}

// A file or directory: an empty path would put the files into the working directory.
CLI::Validator path_of(const std::string& what);

// --threads, the same check for every command that takes it: TBB aborts on a limit of 0.
CLI::Option* add_threads_option(CLI::App* cmd, std::size_t& threads, const std::string& help);

// --eval-samples, the first N test images (0: all), for train's evaluations and for eval.
CLI::Option* add_eval_samples_option(CLI::App* cmd, std::size_t& samples, const std::string& help);

// The normalization flags: --norm NAME; --bn on|off, another spelling of --norm batch|none (given
// both, they must agree); and the settings of the norms that have them, each an error naming both
// with another norm. Their ranges (model_config.hpp's) are checked here before conversion, and
// again by make_model (check_norm_settings) with what depends on the other flags. The
// subcommand's callback, which runs once all are parsed, sets model.norm. Returns the options,
// for eval's check against a run.
std::vector<CLI::Option*> add_norm_flags(CLI::App* cmd, ModelConfig& model);

CLI::Option* add_model_flag(CLI::App* cmd, std::string& target);
CLI::Option* add_dataset_flag(CLI::App* cmd, std::string& target);

// Every flag of `xgrad train` but --out, into `config`.
void add_train_flags(CLI::App* train_cmd, TrainConfig& config);

// The TrainConfig that `xgrad train` builds from `args` ("--lr", "0.1", "--noisy-bn", ...; no
// program name, no --out). Throws CLI::ParseError with the command line's message.
TrainConfig parse_train_flags(const std::vector<std::string>& args);

}  // namespace xgrad
