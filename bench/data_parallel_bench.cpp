// A data-parallel training step over the ranks of the job it runs in (alone, or under mpirun), as
// `xgrad train` takes one: each rank runs forward and backward on its share of a fixed global batch
// (the shares torch's DistributedSampler deals), DataParallel sums the gradients over ranks while
// backward runs, and every rank's optimizer steps.
//   seed-cnn   global batch 64, Adam (lr 1e-3)
//   paper-mlp  global batch 60, SGD (lr 0.1)
// Arguments: sync (0: each rank's own BatchNorm, 1: SyncBatchNorm), threads per rank, and overlap
// (1: the all-reduce runs during backward, as the trainer's; 0: after it).
// items_per_second is the global batch's images per second. BM_reduce_gradients_* time
// DataParallel::reduce_gradients alone on the step's gradients: over the step's time it is the
// all-reduce's share of a step (inside a step, its time would also hold the wait for the slowest
// rank).
// bench/compare_torch.py --part distributed runs it on 1 and 2 ranks beside PyTorch's
// DistributedDataParallel over gloo.
//
// Every rank must run the same benchmarks the same number of times, in the same order, or a
// collective waits forever: the iterations are fixed (about a second of each) rather than Google
// Benchmark's adaptive count, and rank 0 alone reports.
#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/global_control.h>
#include <xtensor/xrandom.hpp>

#include "autodiff/memory.hpp"
#include "bench/step_optimizer.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/models.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/distributed/data_parallel.hpp"

namespace {

using namespace xgrad;

struct ParallelStep {
    std::shared_ptr<Sequential<float>> model;
    std::unique_ptr<Optimizer<float>> optimizer;
    std::unique_ptr<DataParallel<float>> parallel;
    Batch share;  // this rank's
    float loss_weight = 1;  // this rank's share of the global mean loss, n_r / N

    ParallelStep(const std::string& name, std::size_t batch, bool sync) {
        Rng rng(0);
        ModelConfig config;
        config.name = name;
        config.sync_bn = sync;
        model = make_model(config, rng);
        optimizer = xgrad_bench::step_optimizer(name, model->parameters());
        parallel = std::make_unique<DataParallel<float>>(*model, world());
        parallel->broadcast_state();
        xt::random::seed(0);
        const auto shape = model_takes_flat_input(config) ? std::vector<std::size_t>{batch, 784}
                                                        : std::vector<std::size_t>{batch, 1, 28, 28};
        const auto rank = static_cast<std::size_t>(world()->rank()), ranks = static_cast<std::size_t>(world()->size());
        share = rank_share({xt::random::randn<float>(shape), xt::random::randint<std::int64_t>({batch}, 0, 10)}, rank, ranks);
        loss_weight = static_cast<float>(share.labels.size()) / static_cast<float>(batch);
        model->train();
    }

    Var<float> loss() { return cross_entropy((*model)(Var<float>(share.images)), share.labels); }
    // The step as the trainer takes it, the gradients reduced while backward runs (overlap), or
    // after it.
    void run(bool overlap) {
        optimizer->zero_grad();
        if (overlap) {
            parallel->backward(loss(), xt::xarray<float>(loss_weight));
        } else {
            loss().backward(xt::xarray<float>(loss_weight));
            parallel->reduce_gradients();
        }
        optimizer->step();
    }
};

void data_parallel_step(benchmark::State& state, const std::string& name, std::size_t batch) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(state.range(1)));
    ParallelStep step(name, batch, state.range(0) != 0);
    const bool overlap = state.range(2) != 0;
    for (int i = 0; i < 3; ++i) step.run(overlap);  // buffers allocated, caches warm
    world()->barrier();
    for (auto _ : state) step.run(overlap);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
    state.counters["ranks"] = world()->size();
}

void reduce_gradients(benchmark::State& state, const std::string& name, std::size_t batch) {
    ParallelStep step(name, batch, false);
    step.loss().backward(xt::xarray<float>(step.loss_weight));
    for (int i = 0; i < 3; ++i) step.parallel->reduce_gradients();
    world()->barrier();
    for (auto _ : state) step.parallel->reduce_gradients();
    state.counters["ranks"] = world()->size();
}

void BM_data_parallel_step_seed_cnn(benchmark::State& state) { data_parallel_step(state, "seed-cnn", 64); }
void BM_data_parallel_step_paper_mlp(benchmark::State& state) { data_parallel_step(state, "paper-mlp", 60); }
void BM_reduce_gradients_seed_cnn(benchmark::State& state) { reduce_gradients(state, "seed-cnn", 64); }
void BM_reduce_gradients_paper_mlp(benchmark::State& state) { reduce_gradients(state, "paper-mlp", 60); }

struct Registration {
    const char* name;
    void (*run)(benchmark::State&);
    int iterations;  // about a second's worth
};

void register_benchmarks() {
    for (const Registration& r : {Registration{"BM_data_parallel_step_seed_cnn", BM_data_parallel_step_seed_cnn, 30},
                                  Registration{"BM_data_parallel_step_paper_mlp", BM_data_parallel_step_paper_mlp, 1000}}) {
        benchmark::RegisterBenchmark(r.name, r.run)
            ->ArgNames({"sync", "threads", "overlap"})
            ->ArgsProduct({{0, 1}, {1, 2}, {1}})
            ->Args({0, 1, 0})  // what the overlap is worth
            ->Iterations(r.iterations)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    }
    for (const Registration& r : {Registration{"BM_reduce_gradients_seed_cnn", BM_reduce_gradients_seed_cnn, 1000},
                                  Registration{"BM_reduce_gradients_paper_mlp", BM_reduce_gradients_paper_mlp, 5000}}) {
        benchmark::RegisterBenchmark(r.name, r.run)->Iterations(r.iterations)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
}

// Prints nothing: the reporter of every rank but 0.
class SilentReporter : public benchmark::BenchmarkReporter {
public:
    bool ReportContext(const Context&) override { return true; }
    void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
    xgrad::retain_freed_memory();
    const bool rank0 = world()->rank() == 0;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.starts_with("--benchmark_enable_random_interleaving") && world()->size() > 1) {
            std::fprintf(stderr, "%s: each rank would draw its own order, and the ranks' collectives would not meet\n",
                         argv[i]);
            return 1;
        }
        if (rank0 || !arg.starts_with("--benchmark_out")) argv[kept++] = argv[i];  // one report file, rank 0's
    }
    argc = kept;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    register_benchmarks();
    SilentReporter silent;
    benchmark::RunSpecifiedBenchmarks(rank0 ? nullptr : &silent);
    benchmark::Shutdown();
    return 0;
}
