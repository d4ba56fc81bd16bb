#!/usr/bin/env python3
"""benchmark.tsv of a workflow run: the scores table of cellweave-score (one row per
embedding, in input order: the unintegrated PCA baseline first, then one row per model)
with each row named by its model and each model's wall time and peak memory added from the engine's benchmark files
(Snakemake `benchmark:` TSVs, or Nextflow trace lines written in the same two columns).

    benchmark_table.py SCORES.tsv OUT.tsv --baseline pca --model NAME BENCH.tsv [BENCH.tsv ...] ...

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
    a = ap.parse_args()
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
