#include "autodiff/blas.hpp"

#include <cblas.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <type_traits>

#include <tbb/parallel_for.h>


// OpenBLAS built with DYNAMIC_ARCH (as Debian's is) chooses its kernels when it is loaded, and
// these two entry points choose them again; weak, so that other builds link without them.
extern "C" {
__attribute__((weak)) void gotoblas_dynamic_init();
__attribute__((weak)) void gotoblas_dynamic_quit();
}

namespace xgrad {

namespace {

CBLAS_TRANSPOSE flag(bool trans) { return trans ? CblasTrans : CblasNoTrans; }
int as_int(std::size_t v) { return static_cast<int>(v); }

// Products smaller than this many multiply-adds run in one call: splitting them costs more
// (each part packs its operands again) than a second thread saves.
constexpr std::size_t kSplitAbove = std::size_t{1} << 23;
// Parts of a split product: enough for two threads to balance, few enough that packing the
// shared operand again for each part costs little.
constexpr std::size_t kParts = 4;
// Rows or columns per part, at least.
constexpr std::size_t kMinPartWidth = 64;

// OpenBLAS 0.3.21 (Debian 12) does not know CPU models newer than it (Sapphire and Emerald
// Rapids among them) and falls back to Prescott's SSE3 kernels there: sgemm about 3x slower than
// with its AVX-512 kernels. Where that happened on a CPU with AVX-512 or AVX2, the kernels are
// chosen again as OPENBLAS_CORETYPE=SkylakeX or Haswell would choose them; a user's own
// OPENBLAS_CORETYPE is left alone.
void choose_kernels() {
    if (std::getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return;
    if (strcasecmp(openblas_get_corename(), "prescott") != 0) return;
    __builtin_cpu_init();
    const char* core = nullptr;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq")) {
        core = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        core = "Haswell";
    }
    if (!core) return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");  // child processes choose for themselves
}

// OpenBLAS runs single-threaded: TBB alone spreads the work (gemm below splits large products
// into parts), so that two thread pools never spin against each other on the same cores.
void init_blas() {
    static std::once_flag once;
    std::call_once(once, [] {
        choose_kernels();
        openblas_set_num_threads(1);
    });
}

// Done when the program starts, before it can start threads: setenv is not thread-safe.
[[maybe_unused]] const bool blas_ready = (init_blas(), true);

// The live GemmCallLog, if any: read without the lock to skip it when there is none (the common
// case), and again under the lock, which the log's destructor also takes, to record.
std::atomic<GemmCallLog*> active_log{nullptr};
std::mutex log_mutex;

template <class T>
void blas_gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
               std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
    if constexpr (std::is_same_v<T, float>) {
        cblas_sgemm(CblasRowMajor, flag(trans_a), flag(trans_b), as_int(m), as_int(n), as_int(k), alpha, a, as_int(lda), b,
                    as_int(ldb), beta, c, as_int(ldc));
    } else {
        cblas_dgemm(CblasRowMajor, flag(trans_a), flag(trans_b), as_int(m), as_int(n), as_int(k), alpha, a, as_int(lda), b,
                    as_int(ldb), beta, c, as_int(ldc));
    }
}

}  // namespace

// A large product is split along the longer side of C into parts that TBB runs in parallel, each
// one single-threaded OpenBLAS call on a block of rows of C (rows of op(A)) or of columns of C
// (columns of op(B)). The parts depend on the shape alone, never on the thread count: OpenBLAS
// picks its kernel (and so the order of a sum) by the size of a call, so the same calls make the
// same bits with one thread or two.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
          const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
    init_blas();
    if constexpr (std::is_same_v<T, float>) {
        GemmCallLog::record({trans_a, trans_b, m, n, k, lda, ldb, ldc});
    }
    const std::size_t side = std::max(m, n);
    if (m * n * k < kSplitAbove || side < 2 * kMinPartWidth) {
        blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const std::size_t parts = std::min(kParts, side / kMinPartWidth);
    tbb::parallel_for(std::size_t{0}, parts, [&](std::size_t p) {
        const std::size_t first = side * p / parts, count = side * (p + 1) / parts - first;
        if (m >= n) {  // rows of C: rows of A, or columns of A stored transposed
            blas_gemm(trans_a, trans_b, count, n, k, alpha, a + (trans_a ? first : first * lda), lda, b, ldb, beta,
                      c + first * ldc, ldc);
        } else {  // columns of C: columns of B, or rows of B stored transposed
            blas_gemm(trans_a, trans_b, m, count, k, alpha, a, lda, b + (trans_b ? first * ldb : first), ldb, beta,
                      c + first, ldc);
        }
    });
}

template void gemm<float>(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t,
                          const float*, std::size_t, float, float*, std::size_t);
template void gemm<double>(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*, std::size_t,
                           const double*, std::size_t, double, double*, std::size_t);

void GemmCallLog::record(const GemmCall& call) {
    if (!active_log.load(std::memory_order_relaxed)) return;  // the common case: no log, no lock
    const std::lock_guard lock(log_mutex);
    if (GemmCallLog* log = active_log.load(std::memory_order_relaxed)) log->calls_.push_back(call);
}

GemmCallLog::GemmCallLog() {
    const std::lock_guard lock(log_mutex);
    if (active_log.load(std::memory_order_relaxed)) throw std::logic_error("GemmCallLog: another log is already recording");
    active_log.store(this, std::memory_order_relaxed);
}

GemmCallLog::~GemmCallLog() {
    const std::lock_guard lock(log_mutex);
    active_log.store(nullptr, std::memory_order_relaxed);
}

std::vector<GemmCall> GemmCallLog::calls() const {
    const std::lock_guard lock(log_mutex);
    return calls_;
}

std::string blas_kernels() {
    init_blas();
    return openblas_get_corename();
}

std::string blas_config() {
    // openblas_get_config assembles its text in one static buffer on every call, so two threads
    // asking at once (runs trained side by side, each recording its provenance) garble each
    // other's: it is read once. init_blas first: the kernels it names are those chosen.
    static const std::string config = (init_blas(), std::string(openblas_get_config()));
    return config;
}

}  // namespace xgrad
