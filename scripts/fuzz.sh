#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, AddressSanitizer and UndefinedBehaviorSanitizer in
# build-fuzz/, and runs each for SECONDS on a copy of its seed corpus.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   default 600 s, every target (fuzz/fuzz_<TARGET>.cpp)
# Environment: LRA_FUZZ_JOBS targets at once (default 1), LRA_FUZZ_TIMEOUT seconds after which one input
# counts as a hang (default 20), LRA_FUZZ_ARGS extra libFuzzer flags (e.g. "-fork=1 -ignore_crashes=1" to
# go on after a finding), LRA_BUILD_JOBS build jobs (default: the cores).
# New corpus units go to build-fuzz/corpus/<target>/ (kept between runs), never into fuzz/corpus/; findings
# to build-fuzz/artifacts/<target>/. A single allocation over 512 MB counts as a finding: the inputs are
# small, so only a size taken on trust from the file asks for that much. Prints one line per target and exits 1 when any target found
# something: commit the input under fuzz/regressions/<target>/ with the fix, and ctest replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-600}
shift $(( $# > 0 ? 1 : 0 ))
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a number, got '$seconds'" >&2; exit 2; }
jobs=${LRA_FUZZ_JOBS:-1}
timeout=${LRA_FUZZ_TIMEOUT:-20}
build=build-fuzz

command -v clang++ >/dev/null || { echo "fuzz.sh: needs clang++ (Debian: apt-get install clang libclang-rt-dev libomp-dev)" >&2; exit 2; }
generator=()
command -v ninja >/dev/null && [[ ! -f $build/CMakeCache.txt || -f $build/build.ninja ]] && generator=(-G Ninja)
# -O1 with line tables: quick to build, fast enough to fuzz, symbolised reports; asserts stay on (no
# NDEBUG), so Eigen's and nlohmann's checks count as findings too.
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DLRA_FUZZ=ON -DLRA_CUDA=OFF -DLRA_BUILD_TESTS=OFF \
  >/dev/null

all=()
for f in fuzz/fuzz_*.cpp; do t=${f#fuzz/fuzz_}; all+=("${t%.cpp}"); done
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
binaries=()
for t in "${targets[@]}"; do
  [[ -f fuzz/fuzz_$t.cpp && -d fuzz/corpus/$t ]] ||
    { echo "fuzz.sh: no target '$t' with a corpus in fuzz/corpus/ (targets: ${all[*]})" >&2; exit 2; }
  binaries+=("fuzz_$t")
done
cmake --build "$build" --target "${binaries[@]}" -j"${LRA_BUILD_JOBS:-$(nproc)}"

# One target: its corpus copy, its artifacts, its log; the summary line comes from the log.
run_one() {
  local t=$1 corpus=$build/corpus/$1 art=$build/artifacts/$1 log=$build/logs/$1.log
  mkdir -p "$corpus" "$art" "$(dirname "$log")"
  rm -f "$art"/*
  cp -n fuzz/corpus/"$t"/* "$corpus"/
  local dict=()
  case $t in run_records | published | config | checkpoint) dict=(-dict="$root/fuzz/json.dict") ;; esac
  # LRA_FUZZ_ARGS is split into flags on purpose.
  # shellcheck disable=SC2086
  (cd "$build" && OMP_NUM_THREADS=1 "./fuzz/fuzz_$t" -max_total_time="$seconds" -timeout="$timeout" \
     -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="$root/$art/" "${dict[@]}" \
     ${LRA_FUZZ_ARGS:-} "$root/$corpus") >"$log" 2>&1 || true
  local execs units findings
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  # With -fork, the parent's last "#N: cov: ..." line counts its jobs' executions.
  [[ -n "$execs" ]] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  units=$(find "$corpus" -type f | wc -l)
  findings=$(find "$art" -type f | wc -l)
  echo "fuzz_$t: ${seconds} s, ${execs:-?} executions, $units corpus units, $findings findings (log: $log)"
  find "$art" -type f -printf '  finding: %p\n'
}

pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [[ ${#pids[@]} -ge $jobs ]]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
wait
found=0
for t in "${targets[@]}"; do found=$((found + $(find "$build/artifacts/$t" -type f | wc -l))); done
if [[ $found -gt 0 ]]; then
  echo "fuzz.sh: $found finding(s); reproduce one with $build/fuzz/fuzz_<target> FILE"
  exit 1
fi
echo "fuzz.sh: no findings"
