#!/usr/bin/env bash
# Stages `meson install` of the build under a DESTDIR and builds examples/ against it, as another
# project would: with meson (dependency('xgrad')) and with make (pkg-config --cflags --libs xgrad).
# Then trains the example and requires its test accuracy to reach MIN_ACCURACY.
#   installed_example.sh BUILD_DIR SOURCE_DIR WORK_DIR STEPS MIN_ACCURACY
set -euo pipefail
build=$1 source=$2 work=$3 steps=$4 min_accuracy=$5

rm -rf "$work"
mkdir -p "$work"
stage=$work/stage
meson install -C "$build" --no-rebuild --quiet --destdir "$stage"

# Every header of the tree is installed where another project's includes find it.
missing=0
while IFS= read -r header; do
  if ! compgen -G "$stage/*/include/xgrad/$header" >/dev/null && ! compgen -G "$stage/*/*/include/xgrad/$header" >/dev/null; then
    echo "not installed: $header" >&2
    missing=1
  fi
done < <(cd "$source" && find autodiff layers experiments -name '*.hpp' | sort)
((missing == 0)) || exit 1

pc=$(find "$stage" -name xgrad.pc)
[[ -n "$pc" ]] || { echo "no xgrad.pc under $stage" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
# Nothing of the build or source tree in it (the build's precompiled headers are not installed).
for tree in "$build" "$source"; do
  tree=$(realpath "$tree")
  if grep -F -- "$tree" "$pc" >&2; then
    echo "xgrad.pc names $tree, which another project does not have" >&2
    exit 1
  fi
done
binary=$(find "$stage" -path '*/bin/xgrad' -type f)
[[ -x "$binary" ]] || { echo "no bin/xgrad under $stage" >&2; exit 1; }
"$binary" --help >/dev/null

# The source tree's examples/ copied away from it, so nothing but the install can be found.
cp -r "$source/examples" "$work/examples"
meson setup "$work/meson-build" "$work/examples" >"$work/meson-setup.log" || { cat "$work/meson-setup.log" >&2; exit 1; }
ninja -C "$work/meson-build" >"$work/ninja.log" || { cat "$work/ninja.log" >&2; exit 1; }
make -C "$work/examples" --quiet CXXFLAGS=-O0 >/dev/null
# The make-built program links and runs; the meson-built one trains.
"$work/examples/residual_cnn" 1
"$work/meson-build/residual_cnn" "$steps" "$min_accuracy"
