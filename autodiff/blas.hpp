// Row-major gemm for float and double through OpenBLAS's CBLAS: C = alpha * op(A) op(B) + beta * C.
// OpenBLAS runs single-threaded; large products are split into parts that TBB runs in parallel,
// so the threads are those of the current TBB arena (tbb::global_control limits them).
#pragma once

#include <cstddef>
#include <string>

namespace xgrad {

template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// The name of the CPU whose kernels OpenBLAS runs, e.g. "SkylakeX" (see blas.cpp for how they
// are chosen).
std::string blas_kernels();

// OpenBLAS's description of its build: version, options and the kernels it was compiled for.
std::string blas_config();

}  // namespace xgrad
