# Configuration, validation and the helpers the rules share.

import csv
import gzip
import itertools
import os
import re
import shlex
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

WORKFLOW_DIR = Path(workflow.basedir)
REPO = WORKFLOW_DIR.parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
# Every rule's software under `--sdm conda`: pip installs the cellweave wheel (envs/cellweave.yaml).
CONDA_ENV = str(WORKFLOW_DIR / "envs" / "cellweave.yaml")

# "$CELLWEAVE_SHARED" in a configured path: the shared data folder beside the repository
# unless the environment says otherwise.
os.environ.setdefault("CELLWEAVE_SHARED", str(REPO.parent / "shared"))

# Without a --configfile, run the embedded demo (a simulated data set).
if "datasets" not in config:
    _demo = yaml.safe_load((WORKFLOW_DIR / "config" / "default.yaml").read_text())
    _demo.update(config)
    config.clear()
    config.update(_demo)

validate(config, str(SCHEMA))

OUT = os.path.normpath(config["outdir"])
DATASETS = list(config["datasets"])


def expand_path(p):
    """A configured path with $VARS and ~ expanded."""
    return os.path.expanduser(os.path.expandvars(str(p)))


def ds(name):
    return config["datasets"][name]


def tool(stage):
    """The command of a cellweave binary: from bin_dir when configured, else from PATH."""
    exe = f"cellweave-{stage}"
    if config["bin_dir"]:
        exe = str(Path(expand_path(config["bin_dir"])) / exe)
    return shlex.quote(exe)


def flag(name, value):
    """`--name value`, `--name` for true, nothing for false/None."""
    if value is None or value is False:
        return ""
    if value is True:
        return f"--{name}"
    return f"--{name} {shlex.quote(str(value))}"


def flags(*pairs):
    return " ".join(f for f in (flag(n, v) for n, v in pairs) if f)


def extra(stage):
    return config[stage]["extra"]


def mem(kind):
    """mem_mb of a job, from the size of its inputs: the configured floor for its kind plus
    mem_mb.per_input_mb MB per MB of input files, doubled on each retry (attempt)."""
    floor = config["mem_mb"].get(kind, config["mem_mb"]["default"])
    per_mb = config["mem_mb"]["per_input_mb"]

    def mem_mb(wildcards, input, attempt):
        return attempt * (floor + int(per_mb * input.size_mb + 0.5))

    return mem_mb


def as_list(x):
    return x if isinstance(x, list) else [x]


def inputs_of(name):
    d = ds(name)
    return [expand_path(p) for p in as_list(d["input"])] if "input" in d else []


def obs_of(name):
    d = ds(name)
    return [expand_path(d["obs"])] if "obs" in d else []


def _open_text(path):
    return gzip.open(path, "rt") if str(path).endswith(".gz") else open(path)


def _batches_from_obs(name):
    d = ds(name)
    path = obs_of(name)[0]
    key = d.get("batch_key", "batch")
    try:
        with _open_text(path) as fh:
            rows = csv.reader(fh, delimiter="\t")
            header = next(rows)
            if key not in header:
                raise WorkflowError(
                    f"{path}: field '{key}': batch_key of data set '{name}' is not a column "
                    f"(columns: {', '.join(header)})"
                )
            col = header.index(key)
            return sorted({r[col] for r in rows if len(r) > col})
    except OSError as e:
        raise WorkflowError(f"{path}: cannot read the obs TSV of data set '{name}': {e}")


def batches_of(name):
    """The batch names of a data set when they can be known before running; else None."""
    d = ds(name)
    if "batches" in d:
        return list(d["batches"])
    if "batch" in d:
        return sorted(set(as_list(d["batch"])))
    if "simulate" in d:  # cellweave-simulate names its batches b0, b1, ...
        return [f"b{i}" for i in range(d["simulate"]["batches"])]
    if "obs" in d:
        return _batches_from_obs(name)
    return None


def _safe(s):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def shards_of(name):
    """{shard id: (batch a, batch b)} when the pairs stage is scattered, else {}.

    Scattered when enabled, the batches are known and there are more than two of them.
    """
    b = batches_of(name)
    if not config["pairs"]["scatter"] or b is None or len(b) <= 2:
        return {}
    pairs = list(itertools.combinations(b, 2))
    ids = [f"{_safe(x)}--{_safe(y)}" for x, y in pairs]
    if len(set(ids)) < len(ids):  # batch names that differ only in odd characters
        ids = [f"pair{i:03d}" for i in range(len(pairs))]
    return dict(zip(ids, pairs))


def is_scattered(name):
    return bool(shards_of(name))


def names_where(pred):
    """A wildcard constraint matching exactly the data sets for which pred holds."""
    names = [n for n in DATASETS if pred(n)]
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def label_key(name):
    return ds(name).get("label_key")


def models_of(name):
    """The models of a data set (config `models`), in order."""
    known = set(config["models"]["inputs"]) | {"claire"}
    ms = list(ds(name)["models"])
    for m in ms:
        if m not in known:
            raise WorkflowError(
                f"data set '{name}': model '{m}' is not in models.inputs (known: {', '.join(sorted(known))});"
                " add a line `{m}: [counts|pairs ...]` there"
            )
    return ms


def embedding_of(name, model):
    if model == "claire":
        return f"{OUT}/{name}/08_claire_embedding.arrow"
    return f"{OUT}/{name}/12_{model}_embedding.arrow"


def scores_of(name, model):
    """The scores table of a model's embedding (CLAIRE's: scores.tsv, the others: 13_scores/)."""
    if model == "claire":
        return f"{OUT}/{name}/scores.tsv"
    return f"{OUT}/{name}/13_scores/{model}.tsv"


if "--min-max-scale" in config["score"]["extra"]:
    raise WorkflowError(
        "config score.extra: --min-max-scale is not supported by the workflow: every embedding is"
        " scored by its own job and the rows are joined into benchmark.tsv, which min-max scaling"
        " across embeddings would make depend on the others (run cellweave-score on the"
        " embeddings together for that)"
    )


def model_inputs(name, model):
    """The input files of a model's cellweave-train call, by flag (cells = the positional)."""
    where = {
        "counts": f"{OUT}/{name}/02_filtered.arrow",
        "pairs": f"{OUT}/{name}/05_pairs.arrow",
        "deepmnn_pairs": f"{OUT}/{name}/05_pairs_deepmnn.arrow",
    }
    # deepMNN's pairs (cellweave-pairs --definition deepmnn) go to train's --pairs
    flag = {"deepmnn_pairs": "pairs"}
    files = {"cells": f"{OUT}/{name}/04_hvg.arrow"}
    for kind in config["models"]["inputs"][model]:
        files[flag.get(kind, kind)] = where[kind]
    return files


def model_args(name, model):
    t = config["train"]
    return " ".join(
        x
        for x in [
            flags(("device", t["device"]), ("seed", t["seed"])),
            config["models"]["extra"],
            ds(name)["model_args"].get(model, ""),
        ]
        if x
    )


def benchmarks_of(name, model):
    """The Snakemake benchmark files of the jobs that make a model's embedding."""
    b = f"{OUT}/{name}/benchmarks"
    if model != "claire":
        inputs = config["models"]["inputs"][model]
        pairs = pair_benchmarks(name) if "pairs" in inputs else []
        if "deepmnn_pairs" in inputs:
            pairs.append(f"{b}/05_pairs_deepmnn.tsv")
        return pairs + [f"{b}/12_train_{model}.tsv"]
    return pair_benchmarks(name) + [f"{b}/06_train_stage1.tsv", f"{b}/07_refine.tsv", f"{b}/08_train_stage2.tsv"]


def pair_benchmarks(name):
    b = f"{OUT}/{name}/benchmarks"
    if is_scattered(name):
        return [f"{b}/05_pairs_{s}.tsv" for s in shards_of(name)] + [f"{b}/05_pairs_knn.tsv", f"{b}/05_pairs_merge.tsv"]
    return [f"{b}/05_pairs.tsv"]


def targets_of(name):
    base = f"{OUT}/{name}"
    t = [f"{base}/integrated.h5ad", f"{base}/umap.png"]
    if len(models_of(name)) > 1:
        t.append(f"{base}/umap_models.png")
    if label_key(name):
        t.append(f"{base}/scores.tsv")
        t += [f"{base}/benchmark.tsv", f"{base}/benchmark.png"]
    if ds(name)["impute"]:
        t.append(f"{base}/10_imputed.arrow")
    return t


def intermediates_of(name):
    """Every intermediate output, also a default target: they are kept for inspection, and
    requesting them means that deleting one re-runs it and then exactly what depends on it."""
    base = f"{OUT}/{name}"
    files = ["01_raw.arrow", "02_filtered.arrow", "02_qc.tsv", "02_genes_qc.tsv", "03_normalized.arrow"]
    files += ["04_hvg.arrow", "04_hvg_genes.arrow", "05_pairs.arrow"]
    if is_scattered(name):
        files += [f"05_pairs/{s}.arrow" for s in shards_of(name)] + ["05_pairs/knn.arrow"]
    for prefix in ["06_stage1", "08_claire"]:
        files += [f"{prefix}_model", f"{prefix}_embedding.arrow", f"{prefix}_log.arrow"]
    files += ["07_refined_pairs.arrow", "09_umap.arrow"]
    for m in models_of(name):
        if m != "claire":
            files += [f"12_{m}_model", f"12_{m}_embedding.arrow", f"12_{m}_log.arrow"]
    if ds(name)["impute"]:
        files += ["10_impute_model", "10_impute_log.arrow"]
    return [f"{base}/{f}" for f in files]


def gpu_resources():
    return {"gpu": 1} if config["train"]["device"] == "cuda" else {}


# Command-line arguments of the stages.


def import_args(name):
    d = ds(name)
    obs = obs_of(name)
    return " ".join(
        x
        for x in [
            flags(
                ("obs", obs[0] if obs else None),
                ("batch-key", d.get("batch_key")),
                ("layer", d.get("counts_layer")),
                ("make-unique", config["import"]["make_unique"]),
                ("join", config["import"]["join"]),
            ),
            " ".join(flag("batch", b) for b in as_list(d.get("batch", []))),
            extra("import"),
        ]
        if x
    )


def pairs_args(name):
    # --labels only feeds the seed-accuracy report in the log; labels never steer the pairs.
    return " ".join(
        x for x in [flags(("space", config["pairs"]["space"]), ("labels", label_key(name))), extra("pairs")] if x
    )


def train_args(name, stage):
    # Stage 1 runs alone (--stage1-only: 3 epochs within 100..600 steps, no refinement, the
    # query encoder's embedding); stage 2 continues its training state (--init) for the rest.
    t = config["train"]
    length = [("stage1-only", True), ("stage1-epochs", t["stage1_epochs"])] if stage == 1 else [("epochs", t["epochs"])]
    return " ".join(
        x
        for x in [
            flags(*length, ("device", t["device"]), ("seed", t["seed"]), ("labels", label_key(name))),
            extra("train"),
        ]
        if x
    )


def colors(name):
    c = ["batch"] + ([label_key(name)] if label_key(name) else [])
    return " ".join(f"--color {shlex.quote(x)}" for x in c)
