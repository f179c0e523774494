#!/usr/bin/env bash
# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer: configures build-asan/ (CPU only),
# builds everything (the lra binary the CLI, worker and Slurm tests spawn included) and runs ctest.
#   scripts/sanitize.sh [CTEST_ARGS...]     e.g. scripts/sanitize.sh -R listops
# Environment: LRA_SANITIZE_CXX the compiler (default clang++ when present, else g++), LRA_BUILD_JOBS build
# and test jobs (default: the cores).
# Any report fails its test: UBSan aborts (-fno-sanitize-recover) and ASan, LeakSanitizer included, exits
# non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-asan
jobs=${LRA_BUILD_JOBS:-$(nproc)}
cxx=${LRA_SANITIZE_CXX:-$(command -v clang++ >/dev/null && echo clang++ || echo g++)}
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
generator=()
command -v ninja >/dev/null && [[ ! -f $build/CMakeCache.txt || -f $build/build.ninja ]] && generator=(-G Ninja)
# -O1 with line tables: a reasonable build time, tests at a usable speed, and reports with file:line.
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DLRA_CUDA=OFF >/dev/null
cmake --build "$build" -j"$jobs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"
