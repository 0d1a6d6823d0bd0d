#include "experiments/report.hpp"

#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/atomic_file.hpp"
#include "experiments/drivers.hpp"
#include "experiments/json_file.hpp"

namespace xgrad {

namespace {

namespace fs = std::filesystem;

// The training seconds of every run below dir (their summary.json files).
double training_seconds(const fs::path& dir) {
    double total = 0;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
        if (entry.path().filename() != "summary.json") continue;
        total += read_json_file(entry.path()).value("seconds", 0.0);
    }
    return total;
}

// "convergence, distributions, ...": every driver's name.
std::string driver_names() {
    std::string names;
    for (const Driver& driver : drivers()) names += (names.empty() ? "" : ", ") + driver.name;
    return names;
}

// A table cell: no line breaks or pipes.
std::string cell(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '\n') out += ' ';
        else if (c == '|') out += "\\|";
        else out += c;
    }
    return out;
}

// What the report accumulates over the experiments.
struct Report {
    std::string summary = "| # | claim | source | paper | xgrad | verdict |\n|---|---|---|---|---|---|\n";
    std::string sections;
    std::size_t count = 0;
    std::size_t experiments = 0;  // with a claims.json
    std::string profiles;
    std::map<std::string, std::vector<std::string>> experiments_by_build;
};

// The builds of an experiment's runs, as provenance.hpp writes them, from its claims.json, each
// quoted as code; "not recorded" for a claims.json of before builds were recorded.
std::vector<std::string> builds_of(const nlohmann::json& claims) {
    std::vector<std::string> builds;
    if (claims.contains("builds")) {
        for (const auto& b : claims.at("builds")) builds.push_back("`" + b.get<std::string>() + "`");
    }
    if (builds.empty()) builds.push_back("not recorded");
    return builds;
}

std::string joined(const std::vector<std::string>& items) {
    std::string out;
    for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
}

// One experiment's section and its rows of the summary, from its claims.json `j` in `dir`.
void append_experiment(Report& r, const nlohmann::json& j, const fs::path& dir, const fs::path& out_dir,
                       const std::string& name) {
    ++r.experiments;
    const std::string profile = j.at("profile");
    if (r.profiles.find(profile) == std::string::npos) r.profiles += (r.profiles.empty() ? "" : ", ") + profile;
    r.sections += "## " + name + ": " + j.at("title").get<std::string>() + "\n\n";
    if (profile != "paper") r.sections += "**Profile " + profile + ": a smoke test, not a reproduction.**\n\n";
    r.sections += j.at("setup").get<std::string>() + "\n\n";
    const std::vector<std::string> builds = builds_of(j);
    r.sections += "Build of its runs: " + joined(builds);
    // The tables and verdicts come from the build that ran the driver, which may reuse runs of
    // an earlier one.
    if (j.contains("analysis_build")) r.sections += "; of its tables and verdicts: `" + j.at("analysis_build").get<std::string>() + "`";
    r.sections += ".\n\n";
    for (const std::string& b : builds) r.experiments_by_build[b].push_back(name);
    for (const auto& t : j.at("tables")) r.sections += t.get<std::string>() + "\n";
    for (const auto& p : j.at("plots")) {
        const std::string link = fs::relative(fs::absolute(dir / p.get<std::string>()), out_dir).generic_string();
        r.sections += "![" + p.get<std::string>() + "](" + link + ")\n\n";
    }
    r.sections += "Verdict rules:\n\n";
    for (const auto& c : j.at("claims")) {
        ++r.count;
        r.summary += "| " + std::to_string(r.count) + " | " + cell(c.at("claim")) + " | " + cell(c.at("source")) + " | " +
                     cell(c.at("paper")) + " | " + cell(c.at("measured")) + " | **" + cell(c.at("verdict")) + "** |\n";
        r.sections += "- claim " + std::to_string(r.count) + ": " + c.at("rule").get<std::string>() + "\n";
    }
    if (const double seconds = training_seconds(dir); seconds > 0) {
        char time[96];
        std::snprintf(time, sizeof time, "\nTraining time of its runs (sum over runs): %.0f s.\n\n", seconds);
        r.sections += time;
    } else {
        r.sections += "\n";
    }
}

// Which build made which experiments' runs.
std::string builds_line(const Report& r) {
    std::vector<std::string> items;
    for (const auto& [build, names] : r.experiments_by_build) items.push_back(build + " (" + joined(names) + ")");
    return "Builds of the runs (the git commit xgrad was built from, \"-dirty\" when it had uncommitted changes): " +
           joined(items) + ".\n\n";
}

// The claims of the report in `path`: the rows "| k | ..." of its summary table, the one headed
// "| # | claim". The sections' tables below it may also start rows with a number (a depth, a batch).
std::size_t claims_in_report(const fs::path& path) {
    std::ifstream in(path);
    std::size_t claims = 0;
    bool in_summary = false;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("| # | claim")) {
            in_summary = true;
        } else if (in_summary && !line.starts_with("|")) {
            break;
        } else if (in_summary) {
            claims += line.size() > 2 && line.starts_with("| ") && std::isdigit(static_cast<unsigned char>(line[2]));
        }
    }
    return claims;
}

}  // namespace

std::size_t write_report(const fs::path& results, const fs::path& out, bool force) {
    if (!fs::is_directory(results)) {
        throw std::runtime_error("no results directory '" + results.string() + "' (" + out.string() +
                                 " left as it is): give --results the directory `xgrad experiment` wrote into");
    }
    const fs::path out_dir = fs::absolute(out).parent_path();
    Report r;
    for (const Driver& driver : drivers()) {
        const fs::path dir = results / driver.name;
        const fs::path claims_path = dir / "claims.json";
        if (!fs::exists(claims_path)) {
            r.sections += "## " + driver.name + "\n\nNot run: no " + claims_path.string() + ". Run `xgrad experiment " +
                          driver.name + " --profile paper`.\n\n";
            continue;
        }
        try {
            append_experiment(r, read_json_file(claims_path), dir, out_dir, driver.name);
        } catch (const nlohmann::json::exception& e) {
            throw std::runtime_error(claims_path.string() + ": not a claims file: " + e.what());
        }
    }
    if (r.experiments == 0) {
        throw std::runtime_error("no experiment results under '" + results.string() + "': no <experiment>/claims.json for any of " +
                                 driver_names() + " (" + out.string() + " left as it is)");
    }
    if (!force && fs::exists(out)) {
        if (const std::size_t before = claims_in_report(out); before > r.count) {
            throw std::runtime_error(out.string() + " reports " + std::to_string(before) + " claims and the results under '" +
                                     results.string() + "' give " + std::to_string(r.count) +
                                     ": not replaced by the smaller report (--force replaces it)");
        }
    }
    const std::string report =
        "# Batch Normalization's claims, measured by xgrad\n\n"
        "Generated by `xgrad report --results " + results.generic_string() + "` from each experiment's claims.json "
        "(profile: " + (r.profiles.empty() ? std::string("none") : r.profiles) + "); regenerate rather than edit. "
        "A figure written a ± b (n=k) is a mean ± sample standard deviation over k seeds; every verdict follows "
        "from the figures by the rule listed in its section. The papers: Ioffe & Szegedy 2015, "
        "\"Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift\"; "
        "Santurkar et al. 2018, \"How Does Batch Normalization Help Optimization?\"; the seed document is "
        "batch-normalization.md.\n\n" + builds_line(r) + r.summary + "\n" + r.sections;
    write_file_atomically(out, report);
    return r.count;
}

}  // namespace xgrad
