#!/usr/bin/env bash
# Checks the CUDA backend on a machine with an NVIDIA GPU, in one go, each step's output in its own log:
#   1. tests   the GPU test executable: every op and attention variant against the CPU backend, the
#              whole model's training step and 10-step loss trajectory, the dual encoder
#   2. bench   `lra bench attn` at L=4096 for softmax and the kernelised variants, with the GPU's measured
#              GEMM and bandwidth ceilings (the issue's targets: softmax within 2x of the GEMM bound, the
#              kernelised variants within 2x of the bandwidth bound)
#   3. train   `lra bench train` of one cosFormer and one softmax encoder on the GPU
#   4. run     the README's `lra run --task listops --attn cosformer`, on the GPU
#   5. memcheck (with --sanitize) the attention tests again under compute-sanitizer's memcheck
#
#   scripts/gpu_check.sh [--sanitize] [BUILD_DIR [LOG_DIR]]    defaults: build, gpu-check
#
# BUILD_DIR holds `lra` and `tests/cuda/lra_cuda_tests` (a CUDA build), or both side by side. LRA_EXEC, if
# set, is a command prefix the binaries run under (a wrapper or a loader). A failing step does not stop
# the others; the exit status is the number of failed steps, listed at the end.
set -uo pipefail

sanitize=0
if [[ "${1:-}" == "--sanitize" ]]; then
  sanitize=1
  shift
fi
build=${1:-build}
logs=${2:-gpu-check}

find_exe() {
  for p in "$build/$1" "$build/tests/cuda/$1"; do
    if [[ -x "$p" ]]; then
      echo "$p"
      return 0
    fi
  done
  echo "gpu_check: no $1 in $build or $build/tests/cuda; build with CUDA (cmake -DLRA_CUDA=ON) first" >&2
  return 1
}
lra=$(find_exe lra) || exit 1
tests=$(find_exe lra_cuda_tests) || exit 1
read -r -a pre <<<"${LRA_EXEC:-}"
mkdir -p "$logs" || exit 1

failed=()
step() {
  local name=$1
  shift
  local start=$SECONDS
  echo "== $name: $*"
  "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$logs/$name.log"
  echo "== $name: exit $rc in $((SECONDS - start)) s (log: $logs/$name.log)"
  if [[ $rc -ne 0 ]]; then failed+=("$name"); fi
}

if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L; fi
step tests "${pre[@]}" "$tests" --durations yes
if grep -q "no usable GPU" "$logs/tests.log"; then
  echo "gpu_check: the tests found no usable GPU, so nothing was checked"
  exit 1
fi
step bench "${pre[@]}" "$lra" bench attn --device cuda --lengths 4096 \
  --attn softmax,linear,performer,performer-relu,cosformer --out "$logs/bench_attn.json"
step train "${pre[@]}" "$lra" bench train --device cuda --attn cosformer
step train_softmax "${pre[@]}" "$lra" bench train --device cuda --attn softmax
step run "${pre[@]}" "$lra" run --task listops --attn cosformer --device cuda --out "$logs/runs"
if [[ $sanitize -eq 1 ]]; then
  step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 "${pre[@]}" "$tests" "[attn]"
fi

if [[ ${#failed[@]} -eq 0 ]]; then
  echo "gpu_check: every step passed"
else
  echo "gpu_check: failed: ${failed[*]}"
fi
exit ${#failed[@]}
