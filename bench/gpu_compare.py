"""Compare the CPU and GPU runs of bench/gpu.sh: usage gpu_compare.py WORK_DIR.

Reads {claire,late}_log_{cpu,gpu}.tsv (per-epoch training logs), claire_{cpu,gpu}.arrow
(embeddings), late_{cpu,gpu}.arrow (imputed values) and wall.tsv; prints the comparison and
writes it as WORK_DIR/summary.tsv (one metric a row) and WORK_DIR/summary.txt. Exits 1 when a
loss curve differs by 5% or more at some epoch.
"""

import csv
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc


def log(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    key = "loss" if "loss" in rows[0] else "train_loss"
    loss = np.array([float(r[key]) for r in rows])
    secs = np.array([float(r["seconds"]) for r in rows])
    return key, loss, secs


def matrix(path):
    """The float columns of an Arrow table (lists flattened) as a cells x values matrix."""
    t = ipc.open_file(path).read_all()
    parts = []
    for name, field in zip(t.column_names, t.schema):
        ty = field.type
        if pa.types.is_floating(ty):
            parts.append(t.column(name).to_numpy().astype(np.float64).reshape(-1, 1))
        elif (pa.types.is_list(ty) or pa.types.is_fixed_size_list(ty)) and pa.types.is_floating(
            ty.value_type
        ):
            col = t.column(name).combine_chunks()
            flat = col.flatten().to_numpy().astype(np.float64)
            parts.append(flat.reshape(len(col), -1))
    if not parts:
        raise SystemExit(f"gpu_compare: {path}: no float columns")
    return np.hstack(parts)


def knn(x, k=15, block=2048):
    """Exact k nearest neighbours (Euclidean, self excluded), in blocks of rows."""
    sq = (x * x).sum(1)
    out = np.empty((len(x), k), dtype=np.int64)
    for s in range(0, len(x), block):
        e = min(s + block, len(x))
        d = sq[s:e, None] + sq[None, :] - 2.0 * x[s:e] @ x.T
        d[np.arange(e - s), np.arange(s, e)] = np.inf
        part = np.argpartition(d, k, axis=1)[:, :k]
        out[s:e] = part
    return out


def main(w):
    rows = []  # (metric, value)
    lines = []

    def say(s):
        print(s)
        lines.append(s)

    ok = True
    ran = []
    for model in ["claire", "late"]:
        need = [f"{w}/{model}_log_{d}.tsv" for d in ("cpu", "gpu")]
        need += [f"{w}/{model}_{d}.arrow" for d in ("cpu", "gpu")]
        missing = [p for p in need if not os.path.exists(p)]
        if missing:
            say(f"{model}: not compared, missing {', '.join(missing)} (its run failed)")
            ok = False
            continue
        ran.append(model)
        key, cpu, tcpu = log(f"{w}/{model}_log_cpu.tsv")
        _, gpu, tgpu = log(f"{w}/{model}_log_gpu.tsv")
        n = min(len(cpu), len(gpu))
        rel = np.abs(cpu[:n] - gpu[:n]) / np.maximum(np.abs(cpu[:n]), 1e-12)
        say(f"{model}: {key} per epoch, cpu {np.round(cpu[:n], 5).tolist()}")
        say(f"{model}: {key} per epoch, gpu {np.round(gpu[:n], 5).tolist()}")
        say(f"{model}: relative loss difference per epoch {np.round(rel, 5).tolist()}")
        say(f"{model}: max relative loss difference {rel.max():.3g}")
        # The first epoch carries the device's start-up (CUDA context, kernel loading).
        rest_c = np.median(tcpu[1:n]) if n > 1 else tcpu[0]
        rest_g = np.median(tgpu[1:n]) if n > 1 else tgpu[0]
        say(
            f"{model}: seconds per epoch, cpu first {tcpu[0]:.3f} then median {rest_c:.3f}; "
            f"gpu first {tgpu[0]:.3f} then median {rest_g:.3f}; cpu/gpu {rest_c / rest_g:.2f}x"
        )
        rows += [
            (f"{model}_epochs", n),
            (f"{model}_max_rel_loss_diff", rel.max()),
            (f"{model}_final_loss_cpu", cpu[n - 1]),
            (f"{model}_final_loss_gpu", gpu[n - 1]),
            (f"{model}_epoch_seconds_cpu_first", tcpu[0]),
            (f"{model}_epoch_seconds_cpu_median", rest_c),
            (f"{model}_epoch_seconds_gpu_first", tgpu[0]),
            (f"{model}_epoch_seconds_gpu_median", rest_g),
        ]
        ok &= bool(rel.max() < 0.05)

    if "claire" in ran:
        claire(w, say, rows)
    if "late" in ran:
        late(w, say, rows)
    wall(w, say, rows)
    say("PASS" if ok else "FAIL: a run failed, or loss curves differ by 5% or more at some epoch")
    with open(f"{w}/summary.tsv", "w") as f:
        f.write("metric\tvalue\n")
        for k, v in rows:
            f.write(f"{k}\t{v:.6g}\n" if isinstance(v, float) else f"{k}\t{v}\n")
    with open(f"{w}/summary.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0 if ok else 1


def claire(w, say, rows):
    a = matrix(f"{w}/claire_cpu.arrow")
    b = matrix(f"{w}/claire_gpu.arrow")
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    say(f"claire: embedding cosine cpu vs gpu ({a.shape[0]} cells x {a.shape[1]}): mean {cos.mean():.4f}, min {cos.min():.4f}")
    ka, kb = knn(a), knn(b)
    overlap = np.mean([len(set(p) & set(q)) / ka.shape[1] for p, q in zip(ka, kb)])
    say(f"claire: 15-NN overlap cpu vs gpu {overlap:.4f}")
    rows += [("claire_cosine_mean", cos.mean()), ("claire_cosine_min", cos.min()), ("claire_knn15_overlap", overlap)]


def late(w, say, rows):
    a = matrix(f"{w}/late_cpu.arrow")
    b = matrix(f"{w}/late_gpu.arrow")
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    say(f"late: imputed values ({a.shape[0]} x {a.shape[1]}) max abs difference {np.abs(a - b).max():.4g}, correlation {r:.6f}")
    rows += [("late_max_abs_diff", np.abs(a - b).max()), ("late_correlation", r)]


def wall(w, say, rows):
    for r in csv.DictReader(open(f"{w}/wall.tsv"), delimiter="\t"):
        say(f"wall {r['run']}: {float(r['seconds']):.2f} s (start-up, reading and writing included)")
        rows.append((f"wall_{r['run']}", float(r["seconds"])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
