// Row-major gemm for float and double through OpenBLAS's CBLAS: C = alpha * op(A) op(B) + beta * C.
#pragma once

#include <cstddef>

namespace xgrad {

template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// How many threads OpenBLAS may use for every later call.
void set_blas_threads(int threads);

}  // namespace xgrad
