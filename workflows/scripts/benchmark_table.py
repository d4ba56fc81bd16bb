#!/usr/bin/env python3
"""benchmark.tsv of a workflow run: the scores table of cellweave-score (one row per
embedding, in input order: the unintegrated PCA baseline first, then one row per model)
with each row named by its model and each model's wall time and peak memory added from the engine's benchmark files
(Snakemake `benchmark:` TSVs, or Nextflow trace lines written in the same two columns).

    benchmark_table.py SCORES.tsv OUT.tsv --baseline pca --model NAME BENCH.tsv [BENCH.tsv ...] ...
    benchmark_table.py SCORES.tsv OUT.tsv --join PCA.tsv MODEL.tsv ... --baseline pca --model ...

With --join, SCORES.tsv is first written from several tables of cellweave-score, one row each
(the baseline's, then one per model, each scored by its own job): their rows in that order
under one header (the columns of all tables; NA where a table lacks one). Each embedding's
metrics do not depend on the others scored beside it unless scores are min-max scaled
(cellweave-score --min-max-scale), which a join cannot do; the one exception, CLAIRE's
batch mixing / bio conservation / F1 (min-max scaled across the embeddings scored together,
as the CLAIRE paper does), is computed again here over the joined rows, from the metrics as
the tables print them (6 decimals: within 1e-6 of cellweave-score's own).

A model's time is the sum of its jobs' `s` and its memory the largest `max_rss` (MB). Standard
library only (runs in any workflow environment).
"""
import argparse
import csv
import math
import sys


def read_tsv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows:
        sys.exit(f"{path}: empty table")
    return rows[0], rows[1:]


def join_tables(parts, out):
    """One wide table of cellweave-score from several (rows in order, the union of columns)."""
    header, rows = [], []
    for p in parts:
        h, rs = read_tsv(p)
        if not h or h[0] != "embedding":
            sys.exit(f"{p}: expected cellweave-score's wide table (first column embedding)")
        header += [c for c in h if c not in header]
        rows += [dict(zip(h, r)) for r in rs]
    claire_f1(header, rows)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows([[r.get(c, "NA") for c in header] for r in rows])


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def claire_f1(header, rows):
    """cellweave-score's claire_batch_mixing, claire_bio_conservation and claire_f1
    (evaluate/aggregate.rs claire_f1): each of the five CLAIRE metrics min-max scaled across
    the rows (two or more; constant: 0), then the means and their harmonic mean."""
    mix, bio = ["claire_basw", "claire_kbet"], ["claire_casw", "claire_louvain_nmi", "claire_louvain_ari"]
    outs = ["claire_batch_mixing", "claire_bio_conservation", "claire_f1"]
    if not all(c in header for c in mix + bio + outs):
        return
    vals = {c: [num(r.get(c)) for r in rows] for c in mix + bio}
    if len(rows) >= 2:
        for c, v in vals.items():
            ok = [x for x in v if not math.isnan(x)]
            lo, hi = (min(ok), max(ok)) if ok else (0.0, 0.0)
            vals[c] = [x if math.isnan(x) else ((x - lo) / (hi - lo) if hi > lo else 0.0) for x in v]
    for i, r in enumerate(rows):
        m = sum(vals[c][i] for c in mix) / len(mix)
        b = sum(vals[c][i] for c in bio) / len(bio)
        f1 = 2 * m * b / (m + b) if m + b > 0 else 0.0
        for c, x in zip(outs, (m, b, f1)):
            r[c] = "NA" if math.isnan(x) else f"{x:.6f}"


def usage(paths):
    """(seconds, peak MB) over a model's benchmark files."""
    secs, peak = 0.0, 0.0
    for p in paths:
        header, rows = read_tsv(p)
        for field in ("s", "max_rss"):
            if field not in header:
                sys.exit(f"{p}: field '{field}': not a benchmark file (columns: {', '.join(header)})")
        for r in rows:
            rec = dict(zip(header, r))
            secs += float(rec["s"])
            rss = rec["max_rss"]
            if rss not in ("", "-", "NA"):
                peak = max(peak, float(rss))
    return secs, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores")
    ap.add_argument("output")
    ap.add_argument("--baseline", default="pca", help="name of the first (unintegrated) row")
    ap.add_argument("--model", nargs="+", action="append", default=[], metavar=("NAME", "BENCH"))
    ap.add_argument("--join", nargs="+", metavar="SCORES", help="write SCORES from these tables first")
    a = ap.parse_args()
    if a.join:
        join_tables(a.join, a.scores)
    header, rows = read_tsv(a.scores)
    if len(rows) != len(a.model) + 1:
        sys.exit(f"{a.scores}: {len(rows)} rows, expected {len(a.model) + 1} (the baseline and one per model)")
    if header[0] != "embedding":
        sys.exit(f"{a.scores}: expected cellweave-score's wide table (first column embedding)")
    out_header = header + ["wall_s", "max_rss_mb"]
    out = [[a.baseline] + rows[0][1:] + ["NA", "NA"]]
    for (name, *bench), row in zip(a.model, rows[1:]):
        secs, peak = usage(bench)
        out.append([name] + row[1:] + [f"{secs:.1f}", f"{peak:.0f}" if peak > 0 else "NA"])
    # Rank by the classic scIB total (0.6 bio + 0.4 batch) when there is one, highest first.
    total = next((c for c in ("agg_scib_classic_total", "total") if c in header), None)
    if total:
        col = header.index(total)

        def key(r):
            try:
                v = float(r[col])
            except ValueError:
                return math.inf
            return -v if math.isfinite(v) else math.inf

        out.sort(key=key)
    with open(a.output, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(out_header)
        w.writerows(out)


if __name__ == "__main__":
    main()
