// The main of every benchmark binary: Google Benchmark's, run under xgrad's memory policy
// (retain_freed_memory), as the `xgrad` CLI runs. --default_malloc leaves glibc's default
// instead, to measure what the policy is worth. The context line blas_kernels names the CPU whose
// OpenBLAS kernels run the products.
#include <cstring>

#include <benchmark/benchmark.h>

#include "autodiff/blas.hpp"
#include "autodiff/memory.hpp"

int main(int argc, char** argv) {
    bool default_malloc = false;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--default_malloc") == 0) {
            default_malloc = true;
        } else {
            argv[kept++] = argv[i];
        }
    }
    argc = kept;
    if (!default_malloc) xgrad::retain_freed_memory();
    benchmark::AddCustomContext("blas_kernels", xgrad::blas_kernels());
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
