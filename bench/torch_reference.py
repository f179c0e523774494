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
--rounds times) and prints them side by side with their ratios, measured in one run. --dropout takes a
comma-separated list there (e.g. 0.1,0: every variant with and without dropout, the same on both sides);
--attn-dropout follows --dropout unless given. torch gets the attention hyperparameters lra resolved
(--attn-params) and the comparison stops if the two sides resolved different ones.

The peer runs at its best: on the BLAS library the alternatives system ranks highest among those
installed (libblas.so.3; OpenBLAS when libopenblas0-pthread is installed), and without
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which some machines set to pin OpenBLAS to an older kernel (the
script re-executes itself without them; lra's own process keeps its environment). The result names the
BLAS, its version, threading and the kernel it chose (threadpoolctl, python3-threadpoolctl, or
OpenBLAS's own openblas_get_corename).
"""
import argparse
import ctypes
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import sysconfig
import time


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# Read by OpenBLAS when it loads; where set, they pin it to an older, slower kernel and cache size.
KERNEL_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
PEER_MARK = "LRA_TORCH_PEER"  # set in the peer's environment once it has been cleaned
# lra settings that choose how it keeps intermediates, not what it computes (softmax's store_probs=true
# keeps P for the backward, as autograd does; false recomputes it): torch has no such choice.
IMPLEMENTATION_ONLY = ("store_probs",)


def best_blas_dir():
    """The folder of the libblas.so.3 alternative with the highest priority (what Debian's auto mode
    picks), or None when update-alternatives knows none."""
    arch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    try:
        out = subprocess.run(["update-alternatives", "--query", f"libblas.so.3-{arch}"],
                             capture_output=True, text=True).stdout
    except OSError:
        return None
    best, best_priority, path = None, None, None
    for line in out.splitlines():
        key, _, value = line.partition(": ")
        if key == "Alternative":
            path = value
        elif key == "Priority" and path and (best_priority is None or int(value) > best_priority):
            best, best_priority = path, int(value)
    return os.path.dirname(best) if best else None


def peer_env():
    """This environment less the OpenBLAS kernel overrides, with the best BLAS first on the library path."""
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_OVERRIDES}
    best = best_blas_dir()
    if best:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([best] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    env[PEER_MARK] = "1"
    return env


def loaded_blas_paths():
    """The BLAS libraries this process actually mapped."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            name = os.path.basename(path)
            if "blas" in name or "mkl" in name or "blis" in name:
                libs.add(os.path.realpath(path))
    return sorted(libs)


def blas_info():
    """Which BLAS torch is running on: library, version, threading and kernel (after a GEMM has run)."""
    paths = loaded_blas_paths()
    info = {"libraries": paths}
    try:
        from threadpoolctl import threadpool_info
        for lib in threadpool_info():
            if lib.get("user_api") == "blas":
                info.update(name=lib.get("internal_api"), version=lib.get("version"),
                            threading=lib.get("threading_layer"), kernel=lib.get("architecture"),
                            threads=lib.get("num_threads"), source="threadpoolctl")
                break
    except ImportError:
        for path in paths:
            if "openblas" in os.path.basename(path):
                lib = ctypes.CDLL(path)
                lib.openblas_get_corename.restype = lib.openblas_get_config.restype = ctypes.c_char_p
                info.update(name="openblas", config=lib.openblas_get_config().decode(),
                            kernel=lib.openblas_get_corename().decode(), source="openblas_get_corename")
    if "name" not in info:
        reference = any(os.path.basename(os.path.dirname(p)) == "blas" for p in paths)
        info["name"] = "reference BLAS" if reference else ", ".join(paths) or "none mapped"
    info["overrides"] = {k: os.environ[k] for k in KERNEL_OVERRIDES if k in os.environ}
    return info


def blas_line(info):
    parts = [info["name"]]
    if info.get("version"):
        parts.append(info["version"])
    if info.get("threading"):
        parts.append(f"({info['threading']})")
    if info.get("kernel"):
        parts.append(f"kernel {info['kernel']}")
    if info.get("config"):
        parts.append(f"[{info['config']}]")
    if info.get("overrides"):
        parts.append("with " + " ".join(f"{k}={v}" for k, v in info["overrides"].items()))
    if info["name"] == "reference BLAS":
        parts.append("(the slow reference BLAS: install libopenblas0-pthread for a fair comparison)")
    return " ".join(parts)


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


def given_attn_params(a):
    """--attn-params (a JSON object) under the --set pairs, less lra's IMPLEMENTATION_ONLY settings."""
    params = json.loads(a.attn_params) if a.attn_params else {}
    if not isinstance(params, dict):
        raise ValueError(f"--attn-params expects a JSON object, got {a.attn_params}")
    params.update(parse_set(x) for x in a.set)
    return {k: v for k, v in params.items() if k not in IMPLEMENTATION_ONLY}


def bench_torch(a, dropout, attn_dropout):
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lra_torch import LraClassifier, attn_hyperparameters

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = dict(vocab_size=256, num_classes=10, max_length=a.len, emb_dim=a.dim, num_heads=a.heads,
               num_layers=a.layers, qkv_dim=a.dim, mlp_dim=a.mlp, dropout_rate=dropout,
               attention_dropout_rate=attn_dropout, classifier_pool="MEAN", learn_pos_emb=False,
               qkv_bias=False, layernorm_eps=1e-6, gelu="tanh", attn=a.attn, attn_params=given_attn_params(a))
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
    blas = blas_info()
    return {"bench": "train", "impl": "pytorch", "attn": a.attn, "attn_params": attn_hyperparameters(cfg),
            "len": a.len, "batch": a.batch, "dim": a.dim, "heads": a.heads, "layers": a.layers, "mlp": a.mlp,
            "threads": torch.get_num_threads(),
            "steps": a.steps, "warmup": a.warmup, "dropout": dropout, "attn_dropout": attn_dropout,
            "ms_per_step_median": statistics.median(times), "ms_per_step_min": min(times),
            "ms_per_step_max": max(times), "ms_per_step": times, "peak_rss_bytes": peak_rss_bytes(),
            "rss_growth_bytes": peak_rss_bytes() - rss_before,
            "num_params": sum(p.numel() for p in model.parameters()),
            "env": {"torch": torch.__version__, "blas": blas_line(blas), "blas_info": blas,
                    "python": platform.python_version()}}


def shape_args(a, attn, dropout, attn_dropout):
    return ["--attn", attn, "--len", str(a.len), "--batch", str(a.batch), "--dim", str(a.dim),
            "--heads", str(a.heads), "--layers", str(a.layers), "--mlp", str(a.mlp), "--threads", str(a.threads),
            "--steps", str(a.steps), "--warmup", str(a.warmup), "--dropout", str(dropout),
            "--attn-dropout", str(attn_dropout), "--seed", str(a.seed)]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def differing_settings(ours, theirs):
    """The hyperparameters the two sides resolved differently, as 'key: lra X, torch Y'."""
    def same(x, y):
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            return math.isclose(x, y, rel_tol=1e-6)
        return x == y
    keys = sorted(set(ours) | set(theirs))
    return [f"{k}: lra {ours.get(k, '(none)')}, torch {theirs.get(k, '(none)')}" for k in keys
            if k not in ours or k not in theirs or not same(ours[k], theirs[k])]


def compare(a, dropouts):
    rows = []
    for attn in a.attn.split(","):
        for dropout in dropouts:
            attn_dropout = dropout if a.attn_dropout is None else a.attn_dropout
            ours, theirs = [], []
            for _ in range(a.rounds):
                lra_cmd = [a.compare, "bench", "train", "--json"] + shape_args(a, attn, dropout, attn_dropout)
                ours.append(run_json(lra_cmd + [x for s in a.set for x in ("--set", s)]))
                settings = {k: v for k, v in ours[0]["attn_params"].items() if k not in IMPLEMENTATION_ONLY}
                peer_cmd = [sys.executable, os.path.abspath(__file__), "--json", "--attn-params",
                            json.dumps(settings)] + shape_args(a, attn, dropout, attn_dropout)
                theirs.append(run_json(peer_cmd, env=peer_env()))
                diff = differing_settings(settings, theirs[-1]["attn_params"])
                if diff:
                    raise SystemExit(f"{attn}: lra and torch resolved different hyperparameters ({'; '.join(diff)}); "
                                     "bench/lra_torch.py ATTN_DEFAULTS must take every setting lra has")
            o_ms = statistics.median(r["ms_per_step_median"] for r in ours)
            t_ms = statistics.median(r["ms_per_step_median"] for r in theirs)
            o_rss = max(r["peak_rss_bytes"] for r in ours)
            t_rss = max(r["peak_rss_bytes"] for r in theirs)
            rows.append({"attn": attn, "attn_params": ours[0]["attn_params"], "dropout": dropout,
                         "attn_dropout": attn_dropout, "lra_ms": o_ms, "torch_ms": t_ms, "speedup": t_ms / o_ms,
                         "lra_peak_rss_mib": o_rss / 2**20, "lra_arena_mib": ours[0]["peak_arena_bytes"] / 2**20,
                         "torch_peak_rss_mib": t_rss / 2**20,
                         "torch_rss_growth_mib": max(r["rss_growth_bytes"] for r in theirs) / 2**20,
                         "memory_ratio": t_rss / o_rss, "torch_blas": theirs[0]["env"]["blas"],
                         "torch_blas_info": theirs[0]["env"]["blas_info"],
                         "torch_version": theirs[0]["env"]["torch"], "lra_params": ours[0]["num_params"],
                         "torch_params": theirs[0]["num_params"]})
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return
    print_rows(rows, a)


def print_rows(rows, a):
    """The comparison as a text table, or (--markdown) as the README's table."""
    if a.markdown:
        print(f"torch {rows[0]['torch_version']}, BLAS {rows[0]['torch_blas']}\n")
        print("| variant | dropout | lra ms/step | torch ms/step | speed-up | lra RSS | torch RSS |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['attn']} | {r['dropout']:g} | {r['lra_ms']:.1f} | {r['torch_ms']:.1f} | {r['speedup']:.1f}x "
                  f"| {r['lra_peak_rss_mib']:.0f} MiB | {r['torch_peak_rss_mib']:.0f} MiB |")
    else:
        print(f"train step, L={a.len} B={a.batch} D={a.dim} H={a.heads} N={a.layers} MLP={a.mlp}, {a.threads} threads, "
              f"{' '.join(a.set) or 'default hyperparameters'}, median of {a.rounds} alternating rounds x {a.steps} steps")
        print(f"torch {rows[0]['torch_version']}, BLAS {rows[0]['torch_blas']}")
        print(f"{'attn':<16}{'dropout':>8}{'lra ms':>10}{'torch ms':>10}{'speedup':>9}{'lra RSS':>10}{'lra arena':>11}"
              f"{'torch RSS':>11}{'torch +RSS':>12}{'RSS ratio':>11}")
        for r in rows:
            print(f"{r['attn']:<16}{r['dropout']:>8g}{r['lra_ms']:>10.1f}{r['torch_ms']:>10.1f}{r['speedup']:>8.2f}x"
                  f"{r['lra_peak_rss_mib']:>8.0f}Mi{r['lra_arena_mib']:>9.0f}Mi{r['torch_peak_rss_mib']:>9.0f}Mi"
                  f"{r['torch_rss_growth_mib']:>10.0f}Mi{r['memory_ratio']:>10.2f}x")
            if r["lra_params"] != r["torch_params"]:
                print(f"  warning: parameter counts differ (lra {r['lra_params']}, torch {r['torch_params']})")
    for attn in dict.fromkeys(r["attn"] for r in rows):
        params = next(r["attn_params"] for r in rows if r["attn"] == attn)
        text = json.dumps(params, sort_keys=True)
        print(f"- {attn}: `{text}`" if a.markdown else f"  {attn}: {text}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attn", default="softmax", help="variant (comma-separated list with --compare)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="attention hyperparameter, for both sides; repeatable")
    p.add_argument("--attn-params", metavar="JSON", help="attention hyperparameters as one JSON object (under --set)")
    p.add_argument("--len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--mlp", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dropout", default="0.1", help="dropout_rate (comma-separated list with --compare)")
    p.add_argument("--attn-dropout", type=float, help="attention_dropout_rate (default: the dropout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant with --compare")
    p.add_argument("--compare", metavar="LRA_BIN", help="also run `LRA_BIN bench train` and print both")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="print --compare's table in Markdown (the README's)")
    p.add_argument("--rows", metavar="FILE", help="print the table of the rows an earlier `--compare --json` wrote "
                   "(give the shapes it ran with for the text table's heading)")
    a = p.parse_args()
    if a.rows:
        with open(a.rows) as f:
            print_rows([json.loads(line) for line in f if line.strip()], a)
        return
    dropouts = [float(x) for x in a.dropout.split(",")]
    if a.compare:
        compare(a, dropouts)
        return
    if len(dropouts) != 1:
        p.error("--dropout takes one value without --compare")
    if os.environ.get(PEER_MARK) != "1":
        os.execve(sys.executable, [sys.executable] + sys.argv, peer_env())
    dropout = dropouts[0]
    r = bench_torch(a, dropout, dropout if a.attn_dropout is None else a.attn_dropout)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"torch {r['attn']} {json.dumps(r['attn_params'], sort_keys=True)}: median {r['ms_per_step_median']:.1f} "
              f"ms/step (min {r['ms_per_step_min']:.1f}, max {r['ms_per_step_max']:.1f}), "
              f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB; BLAS {r['env']['blas']}")


if __name__ == "__main__":
    main()
