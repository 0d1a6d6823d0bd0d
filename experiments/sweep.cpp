#include "experiments/sweep.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <map>
#include <optional>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "experiments/activation_statistics.hpp"
#include "experiments/atomic_file.hpp"
#include "experiments/csv_text.hpp"
#include "experiments/json_file.hpp"
#include "experiments/models.hpp"
#include "experiments/plot.hpp"
#include "experiments/regular_file.hpp"
#include "experiments/train_flags.hpp"

namespace xgrad {

namespace {

namespace fs = std::filesystem;
// The grid's keys in the order the file writes them: that order is the arms'.
using Json = nlohmann::ordered_json;

// More runs than this is a typo in a grid or in the seeds, not an experiment: it would be months
// of training, and its list alone gigabytes.
constexpr std::size_t max_runs = 100'000;

// Errors about the spec file: "<file>: <key path>: <what>".
struct SpecFile {
    std::string file;
    [[noreturn]] void fail(const std::string& where, const std::string& what) const {
        throw std::invalid_argument(file + ": " + where + ": " + what);
    }
};

// A value as an error quotes it; a list or an object by its kind alone.
std::string described(const Json& value) {
    if (value.is_object()) return "an object";
    if (value.is_array()) return "a list";
    return value.dump();
}

// The train flags that are not sweep keys: the sweep sets the runs' directories, threads and seeds.
bool set_by_the_sweep(const std::string& key) { return key == "out" || key == "threads" || key == "seed"; }

// The options of `xgrad train`, to look the spec's keys up in.
class TrainFlags {
public:
    TrainFlags() { add_train_flags(&app_, unused_); }
    const CLI::Option* find(const std::string& key) const {
        return key == "help" ? nullptr : app_.get_option_no_throw("--" + key);
    }
    // "model, dataset, norm, ...", as the spec writes them.
    std::string names() const {
        std::string names;
        for (const CLI::Option* option : app_.get_options()) {
            const std::string name = option->get_name().substr(2);
            if (find(name) && !set_by_the_sweep(name)) names += (names.empty() ? "" : ", ") + name;
        }
        return names;
    }

private:
    TrainConfig unused_;  // the options' targets, before app_ binds them
    CLI::App app_;
};

// One key's value of the spec as `xgrad train` arguments, with where it is written.
struct Setting {
    std::string where;  // "base.lr", "grid.lr[2]"
    std::vector<std::string> args;  // {"--lr", "0.5"}; {"--noisy-bn"}; {} for false
    std::string text;  // the value as an arm's name writes it
};

void check_key(const SpecFile& spec, const TrainFlags& flags, const std::string& key, const std::string& where) {
    if (key == "out") spec.fail(where, "--out is not a sweep key: the sweep puts each run in <results>/<name>/<arm>/seed<k>");
    if (key == "threads") {
        spec.fail(where, "--threads is not a sweep key: --jobs sets how many runs train at once (one thread each when "
                         "several do), and a run's results do not depend on its threads (on the own convolutions; "
                         "a conv-backend onednn run's config.json records the threads it ran on)");
    }
    if (key == "seed") spec.fail(where, "--seed is not a sweep key: the list \"seeds\" gives the runs' seeds");
    if (!flags.find(key)) spec.fail(where, "unknown flag --" + key + " (the flags of xgrad train: " + flags.names() + ")");
}

Setting setting_of(const SpecFile& spec, const TrainFlags& flags, const std::string& key, const Json& value,
                   const std::string& where) {
    const std::string flag = "--" + key;
    if (flags.find(key)->get_expected_max() == 0) {  // a flag without a value
        if (!value.is_boolean()) {
            spec.fail(where, flag + " takes no value: expected true (given) or false (omitted); got " + described(value));
        }
        return {where, value.get<bool>() ? std::vector<std::string>{flag} : std::vector<std::string>{}, value.dump()};
    }
    if (value.is_number()) return {where, {flag, value.dump()}, value.dump()};
    if (value.is_string()) {
        const std::string text = value.get<std::string>();
        // A model spec named in a sweep spec is found beside it, wherever the sweep is run from.
        const std::filesystem::path model_spec = std::filesystem::path(spec.file).parent_path() / text;
        if (key == "model-spec" && std::filesystem::path(text).is_relative()) return {where, {flag, model_spec.string()}, text};
        return {where, {flag, text}, text};
    }
    spec.fail(where, flag + " takes a number or a string; got " + described(value));
}

std::optional<std::string> parse_error_of(const std::vector<std::string>& args) {
    try {
        parse_train_flags(args);
    } catch (const CLI::ParseError& e) {
        return e.what();
    }
    return std::nullopt;
}

// The configuration of an arm: its settings through `xgrad train`'s parser, then the checks train
// makes before it writes anything. An error of one setting alone names that setting's key; one of
// the settings together names the arm.
TrainConfig config_of(const SpecFile& spec, const std::vector<Setting>& settings, const std::string& arm) {
    std::vector<std::string> args;
    for (const Setting& s : settings) args.insert(args.end(), s.args.begin(), s.args.end());
    TrainConfig config;
    try {
        config = parse_train_flags(args);
    } catch (const CLI::ParseError& e) {
        for (const Setting& s : settings) {
            if (parse_error_of(s.args) == std::string(e.what())) spec.fail(s.where, e.what());
        }
        spec.fail("arm " + arm, e.what());
    }
    try {
        check_train_config(config);
        Rng rng(0);
        check_recorded_layers(*make_model(config.model, rng), config.record_activations);
    } catch (const std::exception& e) {
        spec.fail("arm " + arm, e.what());
    }
    return config;
}

// A name as a directory takes it: anything but letters, digits and . _ + - = , becomes _.
std::string directory_safe(std::string name) {
    for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("._+-=,").find(c) == std::string_view::npos) c = '_';
    }
    return name;
}

std::string read_name(const SpecFile& spec, const Json& root) {
    if (!root.contains("name")) spec.fail("name", "missing: the sweep's directory under --results");
    const Json& value = root["name"];
    const std::string name = value.is_string() ? value.get<std::string>() : "";
    if (name.empty() || name != directory_safe(name) || name == "." || name == "..") {
        spec.fail("name", "expected the sweep's directory name (letters, digits and . _ + - = ,); got " + described(value));
    }
    return name;
}

std::vector<Setting> read_base(const SpecFile& spec, const TrainFlags& flags, const Json& root) {
    std::vector<Setting> base;
    if (!root.contains("base")) return base;
    if (!root["base"].is_object()) spec.fail("base", "expected an object of xgrad train flags; got " + described(root["base"]));
    for (const auto& [key, value] : root["base"].items()) {
        check_key(spec, flags, key, "base." + key);
        base.push_back(setting_of(spec, flags, key, value, "base." + key));
    }
    return base;
}

struct GridKey {
    std::string key;
    std::vector<Setting> values;
};

std::vector<GridKey> read_grid(const SpecFile& spec, const TrainFlags& flags, const Json& root) {
    std::vector<GridKey> grid;
    if (!root.contains("grid")) return grid;
    if (!root["grid"].is_object()) spec.fail("grid", "expected an object of lists of values; got " + described(root["grid"]));
    for (const auto& [key, list] : root["grid"].items()) {
        const std::string where = "grid." + key;
        check_key(spec, flags, key, where);
        if (root.contains("base") && root["base"].contains(key)) {
            spec.fail(where, "also in base; give a key in base or in the grid, not both");
        }
        if (!list.is_array()) spec.fail(where, "expected a list of values; got " + described(list));
        if (list.empty()) spec.fail(where, "an empty list (a grid key needs at least one value)");
        GridKey g{key, {}};
        for (std::size_t i = 0; i < list.size(); ++i) {
            Setting s = setting_of(spec, flags, key, list[i], where + "[" + std::to_string(i) + "]");
            for (std::size_t j = 0; j < i; ++j) {
                if (g.values[j].text == s.text) spec.fail(s.where, "the same value as " + g.values[j].where);
            }
            g.values.push_back(std::move(s));
        }
        grid.push_back(std::move(g));
    }
    return grid;
}

// The grid's cartesian product: the first key outermost, the last varying fastest.
std::vector<SweepArm> expand(const SpecFile& spec, const std::vector<Setting>& base, const std::vector<GridKey>& grid) {
    std::vector<SweepArm> arms;
    std::map<std::string, std::string> where_named;  // arm directory -> the grid values that gave it
    std::vector<std::size_t> index(grid.size(), 0);
    for (;;) {
        SweepArm arm;
        std::vector<Setting> settings = base;
        std::string values;
        for (std::size_t k = 0; k < grid.size(); ++k) {
            const Setting& s = grid[k].values[index[k]];
            settings.push_back(s);
            arm.values.emplace_back(grid[k].key, s.text);
            arm.name += (k ? "," : "") + directory_safe(grid[k].key + "=" + s.text);
            values += (k ? ", " : "") + s.where;
        }
        if (grid.empty()) arm.name = "base";
        if (const auto [it, added] = where_named.emplace(arm.name, values); !added) {
            spec.fail("grid", "the arms of " + it->second + " and of " + values + " would share the directory " + arm.name);
        }
        arm.config = config_of(spec, settings, arm.name);
        arms.push_back(std::move(arm));
        std::size_t k = grid.size();
        while (k > 0 && ++index[k - 1] == grid[k - 1].values.size()) index[--k] = 0;
        if (k == 0) return arms;
    }
}

std::vector<std::uint64_t> read_seeds(const SpecFile& spec, const Json& root) {
    if (!root.contains("seeds")) spec.fail("seeds", "missing: the list of the runs' seeds, such as [0, 1, 2]");
    const Json& list = root["seeds"];
    if (!list.is_array() || list.empty()) spec.fail("seeds", "expected a non-empty list of seeds; got " + described(list));
    if (list.size() > max_runs) spec.fail("seeds", "more than " + std::to_string(max_runs) + " seeds");
    std::vector<std::uint64_t> seeds;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string where = "seeds[" + std::to_string(i) + "]";
        if (!list[i].is_number()) spec.fail(where, "expected a whole number; got " + described(list[i]));
        try {
            seeds.push_back(parse_train_flags({"--seed", list[i].dump()}).seed);
        } catch (const CLI::ParseError& e) {
            spec.fail(where, e.what());
        }
        const auto earlier = std::find(seeds.begin(), seeds.end() - 1, seeds.back());
        if (earlier != seeds.end() - 1) {
            spec.fail(where, "the same seed as seeds[" + std::to_string(earlier - seeds.begin()) + "]");
        }
    }
    return seeds;
}

std::vector<SweepMetric> read_metrics(const SpecFile& spec, const Json& root) {
    using Kind = SweepMetric::Kind;
    if (!root.contains("metrics")) return {{Kind::final_test_acc}, {Kind::best_test_acc}};
    const Json& list = root["metrics"];
    if (!list.is_array() || list.empty()) spec.fail("metrics", "expected a non-empty list of metrics; got " + described(list));
    std::vector<SweepMetric> metrics;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string where = "metrics[" + std::to_string(i) + "]";
        const Json& m = list[i];
        if (m == "final_test_acc") {
            metrics.push_back({Kind::final_test_acc});
        } else if (m == "best_test_acc") {
            metrics.push_back({Kind::best_test_acc});
        } else if (m.is_object() && m.size() == 1 && m.contains("steps_to")) {
            const Json& target = m["steps_to"];
            if (!target.is_number() || !(target.get<double>() > 0 && target.get<double>() <= 1)) {
                spec.fail(where + ".steps_to", "expected a test accuracy in (0, 1]; got " + described(target));
            }
            metrics.push_back({Kind::steps_to, target.get<double>()});
        } else {
            spec.fail(where, "unknown metric " + described(m) +
                                 " (the metrics: \"final_test_acc\", \"best_test_acc\", {\"steps_to\": ACCURACY})");
        }
        for (std::size_t j = 0; j + 1 < metrics.size(); ++j) {
            if (metrics[j].name() == metrics.back().name()) spec.fail(where, "the same metric as metrics[" + std::to_string(j) + "]");
        }
    }
    return metrics;
}

std::size_t diverged_count(const std::vector<const RunResult*>& runs) {
    return static_cast<std::size_t>(std::count_if(runs.begin(), runs.end(), [](const RunResult* r) { return r->diverged(); }));
}

std::string summary_csv(const Sweep& sweep, const std::vector<RunResult>& results) {
    std::vector<std::string> header{"arm"};
    header.insert(header.end(), sweep.grid_keys.begin(), sweep.grid_keys.end());
    header.insert(header.end(), {"runs", "diverged"});
    for (const SweepMetric& m : sweep.metrics) header.insert(header.end(), {m.name() + "_mean", m.name() + "_sd", m.name() + "_n"});
    std::string csv = csv_line(header);
    for (const SweepArm& arm : sweep.arms) {
        const auto runs = runs_of(results, arm.name);
        std::vector<std::string> row{arm.name};
        for (const auto& value : arm.values) row.push_back(value.second);
        row.insert(row.end(), {std::to_string(runs.size()), std::to_string(diverged_count(runs))});
        for (const SweepMetric& m : sweep.metrics) {
            const Spread s = spread_of(m.values(runs));
            if (s.n == 0) row.insert(row.end(), {"", "", ""});
            else row.insert(row.end(), {exact(s.mean), exact(s.sd), std::to_string(s.n)});
        }
        csv += csv_line(row);
    }
    return csv;
}

// A row of a markdown table.
std::string markdown_row(const std::vector<std::string>& cells) {
    std::string row = "|";
    for (const std::string& cell : cells) row.append(" ").append(cell).append(" |");
    return row + "\n";
}

std::string summary_table(const Sweep& sweep, const std::vector<RunResult>& results) {
    std::vector<std::string> header = sweep.grid_keys.empty() ? std::vector<std::string>{"arm"} : sweep.grid_keys;
    for (const SweepMetric& m : sweep.metrics) header.push_back(m.name());
    header.push_back("diverged");
    std::string table = markdown_row(header) + markdown_row(std::vector<std::string>(header.size(), "---"));
    for (const SweepArm& arm : sweep.arms) {
        const auto runs = runs_of(results, arm.name);
        std::vector<std::string> cells;
        if (arm.values.empty()) cells.push_back(arm.name);
        for (const auto& value : arm.values) cells.push_back(value.second);
        for (const SweepMetric& m : sweep.metrics) {
            cells.push_back(format_spread(spread_of(m.values(runs)), m.kind == SweepMetric::Kind::steps_to ? 0 : 4));
        }
        cells.push_back(std::to_string(diverged_count(runs)) + " of " + std::to_string(runs.size()));
        table += markdown_row(cells);
    }
    return table;
}

}  // namespace

std::string SweepMetric::name() const {
    switch (kind) {
        case Kind::final_test_acc: return "final_test_acc";
        case Kind::best_test_acc: return "best_test_acc";
        case Kind::steps_to: break;
    }
    char buf[48];
    std::snprintf(buf, sizeof buf, "steps_to_%g", target);
    return buf;
}

std::vector<double> SweepMetric::values(const std::vector<const RunResult*>& runs) const {
    if (kind == Kind::final_test_acc) return each(runs, final_test_acc);
    if (kind == Kind::best_test_acc) return each(runs, best_test_acc);
    std::vector<double> steps;
    for (const RunResult* r : runs) {
        const auto reached = steps_to_reach(*r, target);
        if (reached && !r->diverged()) steps.push_back(static_cast<double>(*reached));
    }
    return steps;
}

std::vector<RunSpec> Sweep::runs() const {
    std::vector<RunSpec> runs;
    for (const SweepArm& arm : arms) {
        for (auto& run : seeded_runs(arm.name, arm.config, seeds)) runs.push_back(std::move(run));
    }
    return runs;
}

Sweep load_sweep(const fs::path& file) {
    const SpecFile spec{file.string()};
    Sweep sweep;
    sweep.file = file;
    sweep.bytes = read_regular_file(file);
    const Json root = parse_json_object<Json>(sweep.bytes, spec.file);
    for (const auto& [key, value] : root.items()) {
        if (key != "name" && key != "description" && key != "base" && key != "grid" && key != "seeds" && key != "metrics") {
            spec.fail(key, "unknown key (the keys of a spec: name, description, base, grid, seeds, metrics)");
        }
    }
    if (root.contains("description") && !root["description"].is_string()) {
        spec.fail("description", "expected a string; got " + described(root["description"]));
    }
    sweep.name = read_name(spec, root);
    const TrainFlags flags;
    const std::vector<Setting> base = read_base(spec, flags, root);
    const std::vector<GridKey> grid = read_grid(spec, flags, root);
    for (const GridKey& g : grid) sweep.grid_keys.push_back(g.key);
    sweep.seeds = read_seeds(spec, root);
    std::size_t runs = sweep.seeds.size();  // at most max_runs (read_seeds)
    for (const GridKey& g : grid) {
        runs *= g.values.size();  // no overflow: max_runs times a list's length
        if (runs > max_runs) {
            spec.fail("grid", "with the seeds, more than " + std::to_string(max_runs) + " runs (" +
                                  std::to_string(sweep.seeds.size()) + " seeds)");
        }
    }
    sweep.metrics = read_metrics(spec, root);
    sweep.arms = expand(spec, base, grid);
    return sweep;
}

void run_sweep(const Sweep& sweep, const ExperimentOptions& options, std::ostream& out) {
    const fs::path dir = options.results / sweep.name;
    const std::vector<RunSpec> runs = sweep.runs();
    for (std::size_t i = 0; i < runs.size(); ++i) {
        try {
            check_run_directory(runs[i].config, dir / runs[i].name);
        } catch (const std::exception& e) {
            SpecFile{sweep.file.string()}.fail("arm " + sweep.arms[i / sweep.seeds.size()].name, e.what());
        }
    }
    const std::vector<RunResult> results = run_all(runs, dir, options, out);
    if (!options.writes_report()) return;
    PlotSpec plot_spec{sweep.name + ": test accuracy (mean, band = min..max over seeds)", "training step", "test accuracy",
                       false, {}};
    for (const SweepArm& arm : sweep.arms) {
        plot_spec.curves.push_back(
            mean_curve(arm.name, runs_of(results, arm.name), [](const MetricsRow& row) { return row.test_acc; }));
    }
    // The figures first: a plot that fails (matplotlib missing) leaves them written.
    const std::string table = summary_table(sweep, results);
    write_file_atomically(dir / "summary.csv", summary_csv(sweep, results));
    write_file_atomically(dir / "summary.md", "# " + sweep.name + "\n\n" + table);
    write_file_atomically(dir / "spec.json", sweep.bytes);
    plot(plot_spec, dir / "test_accuracy.png");
    out << "\n" << sweep.name << " (" << sweep.file.string() << "), mean ± sd over seeds:\n\n"
        << table << "\nsummary.csv, summary.md, test_accuracy.png and spec.json in " << dir.string() << "\n";
}

}  // namespace xgrad
