#!/usr/bin/env python
"""The results of bench/train.sh (stdlib only).

  train_table.py row BENCH THREADS ROUND PEER.json WALL_KEY CPU_KEY
      one results line for a PyTorch peer's JSON output
  train_table.py table RESULTS.tsv
      the final table

Results lines: bench, implementation, threads, round, wall seconds, CPU seconds (or -).
Per bench, thread count and implementation: the median and mean over the rounds of the
per-round wall time, the mean CPU time, and the ratios PyTorch / cellweave.
"""
import json
import statistics
import sys
from collections import defaultdict

NAMES = {
    "torch": "PyTorch 1.13",
    "step_cpu": "cellweave fused step (auto)",
    "step_cpu_f32": "cellweave fused step (f32)",
    "step_ops": "cellweave candle-ops step",
    "cellweave": "cellweave-impute (LATE)",
}
TITLES = {
    "claire": "CLAIRE training step, seconds per step (256 anchors, 2 x 256 views, 2000 genes, "
              "2000-500-250-128, queue 2048)",
    "late": "LATE training epoch, seconds per epoch (10000 x 949, 9.8% non-zero, "
            "G-800-400-800-G, batch 256)",
}


def row(bench, threads, rnd, path, wall_key, cpu_key):
    d = json.load(open(path))
    print("\t".join([bench, "torch", threads, rnd, str(d[wall_key]), str(d[cpu_key])]))


def table(path):
    runs = defaultdict(list)
    for line in open(path):
        bench, impl, threads, rnd, wall, cpu = line.rstrip("\n").split("\t")
        runs[(bench, int(threads), impl)].append(
            (float(wall), None if cpu == "-" else float(cpu)))
    for bench in ("claire", "late"):
        keys = sorted(k for k in runs if k[0] == bench)
        if not keys:
            continue
        print()
        print(TITLES[bench])
        print(f"{'threads':>7}  {'implementation':<28}{'rounds':>7}{'median s':>10}{'mean s':>10}"
              f"{'cpu s':>10}{'PyTorch/this (median, mean, cpu)':>36}")
        for threads in sorted({k[1] for k in keys}):
            torch = runs.get((bench, threads, "torch"))
            for impl in ("torch", "step_cpu", "step_cpu_f32", "step_ops", "cellweave"):
                r = runs.get((bench, threads, impl))
                if not r:
                    continue
                wall = [w for w, _ in r]
                cpus = [c for _, c in r if c is not None]
                med, mean = statistics.median(wall), statistics.mean(wall)
                cpu = statistics.mean(cpus) if cpus else None
                ratio = ""
                if torch and impl != "torch":
                    tw = [w for w, _ in torch]
                    tc = [c for _, c in torch if c is not None]
                    parts = [f"{statistics.median(tw) / med:.2f}x", f"{statistics.mean(tw) / mean:.2f}x",
                             f"{statistics.mean(tc) / cpu:.2f}x" if cpu and tc else "-"]
                    ratio = ", ".join(parts)
                cpu_s = f"{cpu:.4f}" if cpu is not None else "-"
                print(f"{threads:>7}  {NAMES[impl]:<28}{len(r):>7}{med:>10.4f}{mean:>10.4f}{cpu_s:>10}{ratio:>36}")


if __name__ == "__main__":
    if sys.argv[1] == "row":
        row(*sys.argv[2:8])
    else:
        table(sys.argv[2])
