#!/usr/bin/env python3
"""Times the training step of `lra bench train` in PyTorch (Debian's python3-torch): the same model
(bench/lra_torch.py), shapes, random tokens, dropout and AdamW, on the same threads.

  python3 bench/torch_reference.py --attn softmax --len 1024 --batch 8 --threads 2
  python3 bench/torch_reference.py --attn performer --set features=128 --set causal=true --len 1024
  python3 bench/torch_reference.py --compare build/lra --attn softmax,cosformer --threads 2

Variants: softmax, cosformer, linear, performer, performer-relu (bench/lra_torch.py ATTN_DEFAULTS has their
hyperparameters). --set KEY=VALUE (repeatable) sets one in the model's attn_params (true/false read as
bool, numbers as numbers, anything else as a string) and is passed on as is to `lra bench train --set`.
Performer projections are redrawn by the redraw hyperparameter (default "step": before every training
forward after the first), so drawing them is part of the timed step.

--compare runs `lra bench train --json` and this benchmark (each in its own process, alternating,
--rounds times) and prints them side by side with their ratios, measured in one run.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def loaded_blas():
    """The BLAS library this process actually mapped (Debian's torch takes whichever libblas.so.3 the
    alternatives system points at: the reference BLAS by default, OpenBLAS when it is installed)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            name = os.path.basename(path)
            if "blas" in name or "mkl" in name:
                libs.add(os.path.realpath(path))
    return ", ".join(sorted(libs)) or "none mapped"


def parse_set(arg):
    """--set KEY=VALUE as (key, value): true/false as bool, numbers as int or float, else the string."""
    key, eq, text = arg.partition("=")
    if not eq or not key:
        raise ValueError(f"--set expects KEY=VALUE, got '{arg}'")
    if text in ("true", "false"):
        return key, text == "true"
    for kind in (int, float):
        try:
            return key, kind(text)
        except ValueError:
            pass
    return key, text


def bench_torch(a):
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lra_torch import LraClassifier

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = dict(vocab_size=256, num_classes=10, max_length=a.len, emb_dim=a.dim, num_heads=a.heads,
               num_layers=a.layers, qkv_dim=a.dim, mlp_dim=a.mlp, dropout_rate=a.dropout,
               attention_dropout_rate=a.attn_dropout, classifier_pool="MEAN", learn_pos_emb=False,
               qkv_bias=False, layernorm_eps=1e-6, gelu="tanh", attn=a.attn,
               attn_params=dict(parse_set(s) for s in a.set))
    model = LraClassifier(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.1)
    tokens = torch.randint(1, 256, (a.batch, a.len))
    labels = torch.randint(0, 10, (a.batch,))
    rss_before = rss_bytes()
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(tokens, None), labels)  # every token real: no mask, as in lra
        loss.backward()
        opt.step()
        if s >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    blas = loaded_blas()
    return {"bench": "train", "impl": "pytorch", "attn": a.attn, "set": cfg["attn_params"], "len": a.len,
            "batch": a.batch, "dim": a.dim, "heads": a.heads, "layers": a.layers, "mlp": a.mlp,
            "threads": torch.get_num_threads(),
            "steps": a.steps, "warmup": a.warmup, "dropout": a.dropout, "attn_dropout": a.attn_dropout,
            "ms_per_step_median": statistics.median(times), "ms_per_step_min": min(times),
            "ms_per_step_max": max(times), "ms_per_step": times, "peak_rss_bytes": peak_rss_bytes(),
            "rss_growth_bytes": peak_rss_bytes() - rss_before,
            "num_params": sum(p.numel() for p in model.parameters()),
            "env": {"torch": torch.__version__, "blas": blas, "python": platform.python_version()}}


def shape_args(a, attn):
    return ["--attn", attn, "--len", str(a.len), "--batch", str(a.batch), "--dim", str(a.dim),
            "--heads", str(a.heads), "--layers", str(a.layers), "--mlp", str(a.mlp), "--threads", str(a.threads),
            "--steps", str(a.steps), "--warmup", str(a.warmup), "--dropout", str(a.dropout),
            "--attn-dropout", str(a.attn_dropout), "--seed", str(a.seed)] + [x for s in a.set for x in ("--set", s)]


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(a):
    rows = []
    for attn in a.attn.split(","):
        ours, theirs = [], []
        for _ in range(a.rounds):
            ours.append(run_json([a.compare, "bench", "train", "--json"] + shape_args(a, attn)))
            theirs.append(run_json([sys.executable, os.path.abspath(__file__), "--json"] + shape_args(a, attn)))
        o_ms = statistics.median(r["ms_per_step_median"] for r in ours)
        t_ms = statistics.median(r["ms_per_step_median"] for r in theirs)
        o_rss = max(r["peak_rss_bytes"] for r in ours)
        t_rss = max(r["peak_rss_bytes"] for r in theirs)
        rows.append({"attn": attn, "set": theirs[0]["set"], "lra_ms": o_ms, "torch_ms": t_ms, "speedup": t_ms / o_ms,
                     "lra_peak_rss_mib": o_rss / 2**20, "lra_arena_mib": ours[0]["peak_arena_bytes"] / 2**20,
                     "torch_peak_rss_mib": t_rss / 2**20,
                     "torch_rss_growth_mib": max(r["rss_growth_bytes"] for r in theirs) / 2**20,
                     "memory_ratio": t_rss / o_rss, "torch_blas": theirs[0]["env"]["blas"],
                     "torch_version": theirs[0]["env"]["torch"], "lra_params": ours[0]["num_params"],
                     "torch_params": theirs[0]["num_params"]})
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"train step, L={a.len} B={a.batch} D={a.dim} H={a.heads} N={a.layers} MLP={a.mlp}, {a.threads} threads, "
          f"dropout {a.dropout}/{a.attn_dropout}, {' '.join(a.set) or 'default hyperparameters'}, "
          f"median of {a.rounds} rounds x {a.steps} steps "
          f"(torch {rows[0]['torch_version']}, BLAS {rows[0]['torch_blas']})")
    print(f"{'attn':<12}{'lra ms':>10}{'torch ms':>10}{'speedup':>9}{'lra RSS':>10}{'lra arena':>11}"
          f"{'torch RSS':>11}{'torch +RSS':>12}{'RSS ratio':>11}")
    for r in rows:
        print(f"{r['attn']:<12}{r['lra_ms']:>10.1f}{r['torch_ms']:>10.1f}{r['speedup']:>8.2f}x"
              f"{r['lra_peak_rss_mib']:>8.0f}Mi{r['lra_arena_mib']:>9.0f}Mi{r['torch_peak_rss_mib']:>9.0f}Mi"
              f"{r['torch_rss_growth_mib']:>10.0f}Mi{r['memory_ratio']:>10.2f}x")
        if r["lra_params"] != r["torch_params"]:
            print(f"  warning: parameter counts differ (lra {r['lra_params']}, torch {r['torch_params']})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attn", default="softmax", help="variant (comma-separated list with --compare)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="attention hyperparameter, for both sides; repeatable")
    p.add_argument("--len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--mlp", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--attn-dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant with --compare")
    p.add_argument("--compare", metavar="LRA_BIN", help="also run `LRA_BIN bench train` and print both")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.compare:
        compare(a)
        return
    r = bench_torch(a)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"torch {' '.join([r['attn']] + a.set)}: median {r['ms_per_step_median']:.1f} ms/step "
              f"(min {r['ms_per_step_min']:.1f}, max {r['ms_per_step_max']:.1f}), "
              f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
