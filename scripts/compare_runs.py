"""Compare two workflow result trees file by file: the "same outputs" check of a refactor.

Run the same workflow with the old and the new binaries into two folders, then

    python scripts/compare_runs.py OLD_DIR NEW_DIR     # a Python with pyarrow and numpy

Arrow files: same schema (names, types), same values (NaN equal to NaN), same schema metadata
(provenance included) once the timing fields are dropped (keys and columns named seconds,
wall_s, cpu_s, max_rss_mb); other files byte for byte, or, for text, equal once `seconds:`
values and those TSV columns are masked; logs and the engines' benchmark files are skipped. Prints each difference and a count; exits 1 when anything differs.
"""
import json
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

# The names of the fields that hold a run's timing or memory (training logs, cards, state.json,
# benchmark.tsv): the only values that legitimately differ between two identical runs.
VOLATILE = re.compile(r"^(seconds|wall_s|cpu_s|max_rss_mb)$")


def scrub(o):
    if isinstance(o, dict):
        return {k: scrub(v) for k, v in o.items() if not VOLATILE.search(k)}
    if isinstance(o, list):
        return [scrub(v) for v in o]
    return o


def meta(schema):
    out = {}
    for k, v in (schema.metadata or {}).items():
        k, v = k.decode(), v.decode()
        try:
            out[k] = scrub(json.loads(v))
        except ValueError:
            out[k] = v
    return out


def same_data(ta, tb):
    import numpy as np
    keep = [n for n in ta.schema.names if not VOLATILE.search(n)]
    ta, tb = ta.select(keep), tb.select(keep)
    if ta.num_rows != tb.num_rows:
        return False
    for ca, cb in zip(ta.columns, tb.columns):
        t = ca.type
        if pa.types.is_floating(t):
            if not np.array_equal(ca.to_numpy(zero_copy_only=False), cb.to_numpy(zero_copy_only=False), equal_nan=True):
                return False
        elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_floating(t.value_type):
            fa = ca.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            fb = cb.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            if not np.array_equal(fa, fb, equal_nan=True):
                return False
            if ca.combine_chunks().offsets != cb.combine_chunks().offsets:
                return False
        elif not ca.equals(cb):
            return False
    return True


def same_text(pa_, pb):
    # text files equal once timing fields are masked: yaml/json lines naming seconds, and
    # TSV columns whose header names a time or memory
    try:
        la, lb = pa_.read_text().splitlines(), pb.read_text().splitlines()
    except UnicodeDecodeError:
        return False
    if len(la) != len(lb):
        return False
    if str(pa_).endswith(".tsv"):
        head = la[0].split("\t")
        drop = {i for i, h in enumerate(head) if VOLATILE.search(h)}
        cut = lambda l: [c for i, c in enumerate(l.split("\t")) if i not in drop]
        return all(cut(x) == cut(y) for x, y in zip(la, lb))
    mask = re.compile(r'("?seconds"?\s*[:=]\s*)[-0-9.e+]+')
    return all(mask.sub(r"\1#", x) == mask.sub(r"\1#", y) for x, y in zip(la, lb))


def read(p):
    try:
        with ipc.open_file(p) as r:
            return r.read_all()
    except pa.ArrowInvalid:
        with ipc.open_stream(p) as r:
            return r.read_all()


a, b = Path(sys.argv[1]), Path(sys.argv[2])
files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
bad = 0
for f in sorted(files_a ^ files_b):
    print(f"ONLY IN ONE: {f}")
    bad += 1
same = skipped = 0
for f in sorted(files_a & files_b):
    pa_, pb = a / f, b / f
    s = str(f)
    if s.endswith(".arrow"):
        ta, tb = read(pa_), read(pb)
        if not ta.schema.remove_metadata().equals(tb.schema.remove_metadata()):
            print(f"SCHEMA DIFFERS: {f}")
            bad += 1
        elif not same_data(ta, tb):
            print(f"DATA DIFFERS: {f}")
            bad += 1
        elif meta(ta.schema) != meta(tb.schema):
            ma, mb = meta(ta.schema), meta(tb.schema)
            print(f"METADATA DIFFERS: {f}: {json.dumps(ma)[:400]} vs {json.dumps(mb)[:400]}")
            bad += 1
        else:
            same += 1
    elif "/logs/" in "/" + s or "/benchmarks/" in "/" + s or s.endswith((".log", ".err")) or ".snakemake" in s:
        skipped += 1
    elif pa_.read_bytes() == pb.read_bytes() or same_text(pa_, pb):
        same += 1
    else:
        print(f"BYTES DIFFER: {f}")
        bad += 1
print(f"{same} identical, {bad} different, {skipped} skipped (logs, timings)")
sys.exit(1 if bad else 0)
