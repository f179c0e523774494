#!/usr/bin/env bash
# Cells per minute of one grid run by 1, 2, ... local workers sharing its folder (`lra reproduce` started
# W times on one --out, each worker on one thread).
#   bench/workers.sh [LRA_BINARY] [WORKER_COUNTS] [STEPS]    default: build/lra "1 2 3" 4000
# The grid: ListOps x softmax, linear, cosformer x 2 seeds = 6 cells of STEPS steps of a tiny model on
# 64-token documents. The data is generated once, before the clock starts; each count gets a fresh
# folder, and every count must end with 6 ok records, one per cell.
set -euo pipefail
lra=${1:-build/lra}
counts=${2:-1 2 3}
steps=${3:-4000}
[[ -x "$lra" ]] || { echo "bench/workers.sh: $lra is not an executable lra binary (build it, or pass its path)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sets=()
for k in n_train=48 n_val=12 n_test=12 emb_dim=16 qkv_dim=16 mlp_dim=16 num_heads=2 num_layers=1 batch_size=8 \
         warmup=2 eval_frequency=500 max_length=64 "num_train_steps=$steps"; do
  sets+=(--set "$k")
done
common=(reproduce --tasks listops --threads 1 -q --cache-dir "$tmp/cache")
grid=("${common[@]}" --attn softmax,linear,cosformer --seeds 2 "${sets[@]}")
"$lra" "${common[@]}" --attn softmax --seeds 1 --set max_length=64 --set n_train=48 --set n_val=12 --set n_test=12 \
  --set num_train_steps=1 --out "$tmp/warm" --report-dir "$tmp/warm" >/dev/null 2>&1
echo "lra $("$lra" --version) on $(nproc) core(s): 6 cells of $steps steps"
echo "workers  wall s  cells/min  speedup"
base=
for w in $counts; do
  out=$tmp/runs-$w
  t0=$(date +%s.%N)
  pids=()
  for ((i = 0; i < w; i++)); do
    "$lra" "${grid[@]}" --out "$out" --report-dir "$tmp/report-$w" >"$tmp/worker-$w-$i.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    wait "$p" || { echo "bench/workers.sh: a worker failed:" >&2; cat "$tmp/worker-$w-"*.log >&2; exit 1; }
  done
  t1=$(date +%s.%N)
  ok=$(grep -l '"status": "ok"' "$out"/*.json | wc -l)
  [[ "$ok" -eq 6 ]] || { echo "bench/workers.sh: $w worker(s) left $ok ok records, not 6" >&2; exit 1; }
  read -r wall rate < <(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f %.3f\n", b - a, 6 * 60 / (b - a) }')
  base=${base:-$rate}
  awk -v w="$w" -v wall="$wall" -v r="$rate" -v b="$base" 'BEGIN { printf "%7d  %6.1f  %9.2f  %6.2fx\n", w, wall, r, r / b }'
done
