// Row-major gemm for float and double through OpenBLAS's CBLAS: C = alpha * op(A) op(B) + beta * C.
// OpenBLAS runs single-threaded; large products are split into parts that TBB runs in parallel,
// so the threads are those of the current TBB arena (tbb::global_control limits them).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace xgrad {

template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// A call of gemm as it was made (before any split into parts).
struct GemmCall {
    bool trans_a, trans_b;
    std::size_t m, n, k, lda, ldb, ldc;
    double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
};

// While a log is alive, it records every gemm<float> call of the process, from any thread, and
// the float products that other kernels make in gemm's stead (they record themselves), so that a
// benchmark can time a training step's products alone, at their own shapes, through gemm.
// One at a time; a call that started recording finishes before the log can go.
class GemmCallLog {
public:
    GemmCallLog();
    ~GemmCallLog();
    GemmCallLog(const GemmCallLog&) = delete;
    GemmCallLog& operator=(const GemmCallLog&) = delete;

    std::vector<GemmCall> calls() const;
    // Adds `call` to the live log, if there is one (gemm calls it, and kernels that replace it).
    static void record(const GemmCall& call);

private:
    std::vector<GemmCall> calls_;
};

// The name of the CPU whose kernels OpenBLAS runs, e.g. "SkylakeX" (see blas.cpp for how they
// are chosen).
std::string blas_kernels();

// OpenBLAS's description of its build: version, options and the kernels it was compiled for.
std::string blas_config();

}  // namespace xgrad
