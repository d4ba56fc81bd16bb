#!/usr/bin/env python3
"""Static check of the cellweave Nextflow pipeline.

The Nextflow engine cannot run on the CI machines (its launcher downloads the runtime), so the
pipeline is checked without it:

1. reftrace (its Python API, as `reftrace lint` uses it) parses every .nf and .config file with
   its Nextflow parser (a syntax error fails) and applies scripts/nextflow_lint_rules.py (nf-core
   labels, tag, tagged container, params only inside config closures).
2. The module information `reftrace info modules` prints: no unresolved include; every process
   that main.nf includes exists; every module is used.
3. Every process (nf-core shape): a meta map in its input, versions.yml in its output, a script
   and a stub block; its script calls one cellweave binary, and every flag the script passes
   exists in that binary's --help (the flags of its cellweave command and of the Groovy
   definitions it uses; another command, e.g. python3, is not checked). The per-stage flags
   main.nf builds (stageArgs) are checked the same way, and conf/modules.config may only refer to processes and stage arguments that exist.
4. Parameters: nextflow_schema.json is exactly the mirror of schemas/config.schema.yaml (the
   Snakemake config schema); every params.X / option the pipeline reads is in the schema; the
   defaults in nextflow.config equal the schema's; the container tag is the workspace version;
   every process names the conda environment shared with Snakemake, which pins cellweave at the
   workspace version.

Usage (from the venv made by scripts/setup.sh):
  .venv/bin/python scripts/check_nextflow.py [--pipeline DIR] [--bin-dir DIR]
  .venv/bin/python scripts/check_nextflow.py --write-schema     # regenerate nextflow_schema.json
Exit status 0 when everything holds; 1 with one line per problem otherwise.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# How nextflow_schema.json groups the top-level config keys (nf-core shows one section per group).
GROUPS = [
    ("input_output_options", "Input/output options", "Data sets to integrate and where results go.",
     ["outdir", "bin_dir", "datasets"]),
    ("resource_options", "Resources", "Threads and memory per task.", ["threads", "mem_mb"]),
    ("stage_options", "Stage parameters", "Parameters of each cellweave binary (defaults = the binaries' own).",
     ["import", "filter", "normalize", "hvg", "pairs", "train", "models", "refine", "score", "plot", "impute"]),
]

FLAG = re.compile(r"(?<![\w$-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, msg):
        self.items.append(f"{where}: {msg}")


def nf_schema(cfg):
    """nextflow_schema.json (nf-schema layout) with the properties of config.schema.yaml."""
    props = cfg["properties"]
    grouped = [k for _, _, _, keys in GROUPS for k in keys]
    missing = sorted(set(props) - set(grouped))
    if missing:
        raise SystemExit(f"check_nextflow.py: GROUPS does not place config keys {missing}")
    defs = {}
    for name, title, desc, keys in GROUPS:
        group = {"title": title, "type": "object", "description": desc,
                 "properties": {k: props[k] for k in keys if k in props}}
        req = [k for k in cfg.get("required", []) if k in keys]
        if req:
            group["required"] = req
        defs[name] = group
    return {
        "$schema": cfg["$schema"],
        "$id": "https://example.invalid/cellweave/workflows/nextflow/nextflow_schema.json",
        "title": "cellweave pipeline parameters",
        "description": "Mirror of schemas/config.schema.yaml (generated: scripts/check_nextflow.py --write-schema). "
        + cfg.get("description", "").strip(),
        "type": "object",
        "$defs": defs,
        "allOf": [{"$ref": f"#/$defs/{name}"} for name, _, _, _ in GROUPS],
    }


def default_bin_dir():
    target = os.environ.get("CARGO_TARGET_DIR")
    return Path(target) / "release" if target else REPO / "target" / "release"


def help_flags(bin_dir, tool, cache):
    if tool not in cache:
        exe = Path(bin_dir) / f"cellweave-{tool}"
        if not exe.exists():
            cache[tool] = None
        else:
            out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
            cache[tool] = set(FLAG.findall(out.stdout + out.stderr)) if out.returncode == 0 else None
    return cache[tool]


def block_after(lines, start, opener_pattern):
    """Lines of the block that starts at the first line matching opener_pattern at or after start
    and ends at the first following line with the same indentation that is a closing brace."""
    for i in range(start, len(lines)):
        m = re.match(r"^(\s*)" + opener_pattern, lines[i])
        if m:
            indent = m.group(1)
            for j in range(i + 1, len(lines)):
                if lines[j].rstrip() == indent + "}":
                    return i, j
            return i, len(lines) - 1
    return None


def sections(body):
    """Split a process body into its sections (input:, output:, when:, script:, stub:)."""
    out, current = {}, None
    for i, line in body:
        m = re.match(r"^\s*(input|output|when|script|shell|exec|stub):\s*$", line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        if current:
            out[current].append((i, line))
    return out


def check_conda(pipe, version, problems):
    """Every process names the conda environment file shared with Snakemake, which exists and
    pins the cellweave package at the workspace version."""
    env_rel = "../snakemake/envs/cellweave.yaml"
    directive = 'conda "${projectDir}/' + env_rel + '"'
    env = pipe / env_rel
    for path in sorted((pipe / "modules").rglob("*.nf")):
        text = path.read_text()
        for _ in re.findall(r"^\s*process\s+\w+", text, re.M):
            if directive not in text:
                problems.add(path.relative_to(pipe), f"process has no `{directive}` directive")
    if not env.exists():
        problems.add(env_rel, "missing (the conda environment of every process)")
        return
    pins = re.findall(r"^\s*-\s*cellweave==(\S+)\s*$", env.read_text(), re.M)
    if version and pins != [version]:
        problems.add(env_rel, f"pins cellweave {pins or 'nowhere'}, expected cellweave=={version}")


def strip_versions(script):
    """The script lines without the versions.yml heredoc (its `--version` call is checked apart)."""
    kept, in_doc, has_doc = [], False, False
    for i, line in script:
        if "<<-END_VERSIONS" in line:
            in_doc, has_doc = True, True
            continue
        if in_doc:
            if line.strip() == "END_VERSIONS":
                in_doc = False
            continue
        kept.append((i, line))
    return kept, has_doc


def check_processes(pipe, modules, bin_dir, problems, help_cache):
    """nf-core shape and binary/flag check of every process. Returns {process: tool}."""
    tools = {}
    for mod in modules:
        path = Path(mod["path"])
        rel = path.relative_to(pipe) if path.is_relative_to(pipe) else path
        lines = path.read_text().split("\n")
        for proc in mod.get("processes", []):
            name = proc["name"]
            span = block_after(lines, 0, rf"process\s+{name}\s*\{{")
            if span is None:
                problems.add(rel, f"process {name}: cannot find its block")
                continue
            body = list(enumerate(lines[span[0] + 1 : span[1]], start=span[0] + 2))
            sec = sections(body)
            for needed in ("input", "output", "script", "stub"):
                if needed not in sec:
                    problems.add(rel, f"process {name}: no {needed}: block")
            text_in = "\n".join(l for _, l in sec.get("input", []))
            text_out = "\n".join(l for _, l in sec.get("output", []))
            if "input" in sec and "val(meta)" not in text_in.replace(" ", ""):
                problems.add(rel, f"process {name}: input has no meta map (val(meta))")
            if "output" in sec and not re.search(r'path\s*\(?\s*"versions\.yml"\s*\)?\s*,\s*emit:\s*versions', text_out):
                problems.add(rel, f"process {name}: output has no versions.yml (emit: versions)")
            script, has_doc = strip_versions(sec.get("script", []))
            if "script" in sec and not has_doc:
                problems.add(rel, f"process {name}: script writes no versions.yml")
            called = {m for _, l in script for m in re.findall(r"\bcellweave-([a-z]+)\b", l)}
            if len(called) != 1:
                problems.add(rel, f"process {name}: script must call exactly one cellweave binary, calls {sorted(called)}")
                continue
            tool = called.pop()
            tools[name] = tool
            known = help_flags(bin_dir, tool, help_cache)
            if known is None:
                problems.add(rel, f"process {name}: cellweave-{tool} not found or --help failed in {bin_dir}")
                continue
            for i, line in cellweave_lines(script):
                for f in FLAG.findall(line):
                    if f not in known:
                        problems.add(f"{rel}:{i}", f"process {name}: cellweave-{tool} has no flag {f}")
    return tools


def cellweave_lines(script):
    """The lines of a script section that pass flags to its cellweave binary: the shell
    commands that call it (a command runs on over lines ending in a backslash) and the Groovy
    definitions (def x = "--flag ...") that are not used only by other commands (such as the
    python3 call of the benchmark process, whose flags are its own)."""
    defs, commands, current = {}, [], None
    for i, line in script:
        m = re.match(r"^\s*def\s+(\w+)\s*=", line)
        if m and current is None:
            defs[m.group(1)] = (i, line)
            continue
        if current is None:
            if not line.strip() or line.strip() in ('"""', "'''"):
                continue
            current = []
            commands.append(current)
        current.append((i, line))
        if not line.rstrip().endswith("\\"):
            current = None
    kept, used_elsewhere, used_by_cellweave = [], set(), set()
    for cmd in commands:
        text = " ".join(l for _, l in cmd)
        names = set(re.findall(r"\$\{?(\w+)", text))
        if re.search(r"\bcellweave-[a-z]+\b", text):
            kept += cmd
            used_by_cellweave |= names
        else:
            used_elsewhere |= names
    for var, line in defs.items():
        if var in used_by_cellweave or var not in used_elsewhere:
            kept.append(line)
    return sorted(kept)


def stage_args(main_nf, bin_dir, problems, help_cache):
    """Flags main.nf builds per stage (def stageArgs): checked against each binary's --help."""
    lines = main_nf.read_text().split("\n")
    span = block_after(lines, 0, r"def\s+stageArgs\s*\(")
    if span is None:
        problems.add(main_nf.name, "no stageArgs function")
        return set()
    keys, current = set(), None
    for i in range(span[0] + 1, span[1]):
        line = lines[i]
        if re.match(r"^\s*\]", line):  # end of the map of stages
            current = None
            continue
        m = re.match(r"^\s*([a-z][a-z0-9_]*)\s*:\s*\[", line)
        if m:
            current = m.group(1).rstrip("_")
            keys.add(current)
        if current is None:
            continue
        tool = current.split("_")[0]
        known = help_flags(bin_dir, tool, help_cache)
        if known is None:
            problems.add(f"{main_nf.name}:{i + 1}", f"stage '{current}': cellweave-{tool} not found or --help failed")
            continue
        for f in FLAG.findall(line):
            if f not in known:
                problems.add(f"{main_nf.name}:{i + 1}", f"stage '{current}': cellweave-{tool} has no flag {f}")
    return keys


def check_params(pipe, cfg, problems):
    props = cfg["properties"]
    ds_props = props["datasets"]["additionalProperties"]["properties"]
    files = sorted(pipe.rglob("*.nf")) + sorted(pipe.rglob("*.config"))
    for path in files:
        rel = path.relative_to(pipe)
        for n, line in enumerate(path.read_text().split("\n"), start=1):
            code = line.split("//")[0]
            if code.lstrip().startswith(("/*", "*")):  # block comments
                continue
            for a, b in re.findall(r"\bparams(?:\.([A-Za-z_]\w*)|\['(\w+)'\])", code):
                top = a or b
                if top not in props:
                    problems.add(f"{rel}:{n}", f"params.{top} is not in the config schema")
            for a, b, key in re.findall(r"\bo(?:\.([A-Za-z_]\w*)|\['(\w+)'\])\.([A-Za-z_]\w*)", code):
                stage = a or b
                if stage not in props:
                    problems.add(f"{rel}:{n}", f"option {stage} is not in the config schema")
                elif key not in props[stage].get("properties", {}):
                    problems.add(f"{rel}:{n}", f"option {stage}.{key} is not in the config schema")
            if path.name == "main.nf":
                for key, sub in re.findall(r"\bd\??\.([A-Za-z_]\w*)(?:\??\.([A-Za-z_]\w*))?", code):
                    if key not in ds_props:
                        problems.add(f"{rel}:{n}", f"data-set option {key} is not in the config schema")
                    elif sub and ds_props[key].get("type") == "object" and sub not in ds_props[key]["properties"]:
                        problems.add(f"{rel}:{n}", f"data-set option {key}.{sub} is not in the config schema")

    # Defaults given in nextflow.config's top-level params block must be the schema's.
    conf = pipe / "nextflow.config"
    lines = conf.read_text().split("\n")
    span = block_after(lines, 0, r"params\s*\{")
    if span is None:
        problems.add("nextflow.config", "no params block")
        return
    for i in range(span[0] + 1, span[1]):
        m = re.match(r"^\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$", lines[i])
        if not m:
            continue
        key, raw = m.groups()
        if key not in props:
            problems.add(f"nextflow.config:{i + 1}", f"params.{key} is not in the config schema")
            continue
        value = {"null": None, "true": True, "false": False}.get(raw, None)
        if raw not in ("null", "true", "false"):
            try:
                value = json.loads(raw.replace("'", '"'))
            except ValueError:
                continue
        expected = props[key].get("default")
        if value != expected and not (value is None and "default" not in props[key]):
            problems.add(f"nextflow.config:{i + 1}", f"params.{key} = {raw}, but the schema default is {expected!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", type=Path, default=REPO / "workflows" / "nextflow")
    ap.add_argument("--bin-dir", type=Path, default=None, help="where the cellweave-* binaries are")
    ap.add_argument("--schema", type=Path, default=REPO / "schemas" / "config.schema.yaml")
    ap.add_argument("--rules", type=Path, default=REPO / "scripts" / "nextflow_lint_rules.py")
    ap.add_argument("--write-schema", action="store_true", help="regenerate nextflow_schema.json and exit")
    a = ap.parse_args()
    pipe = a.pipeline.resolve()
    bin_dir = (a.bin_dir or default_bin_dir()).resolve()
    cfg = yaml.safe_load(a.schema.read_text())
    want = nf_schema(cfg)
    schema_file = pipe / "nextflow_schema.json"
    if a.write_schema:
        schema_file.write_text(json.dumps(want, indent=4) + "\n")
        print(f"wrote {schema_file}")
        return 0

    problems = Problems()
    try:
        from reftrace import ConfigFile, parse_modules
        from reftrace.cli.main import load_rules
    except ImportError:
        print("check_nextflow.py: reftrace is not installed (run scripts/setup.sh)", file=sys.stderr)
        return 2

    # 1. Parse every .nf file (what `reftrace lint` and `reftrace info modules` do, in one
    #    parse) and every .config file, and apply the lint rules.
    module_rules, config_rules = load_rules(str(a.rules))
    parsed = parse_modules(str(pipe))
    for err in parsed.errors:
        problems.add("parse", f"Nextflow parse error: {err.error}")
    for mod in parsed.results:
        for r in module_rules:
            for e in r(mod).errors:
                problems.add(f"{Path(mod.path).relative_to(pipe)}:{e.line}", f"lint: {e.error}")
    for conf in sorted(pipe.rglob("*.config")):
        res = ConfigFile.from_file(str(conf))
        if res.error:
            problems.add(conf.relative_to(pipe), f"Nextflow config parse error: {res.error.error}")
            continue
        for r in config_rules:
            for e in r(res.config_file).errors:
                problems.add(f"{conf.relative_to(pipe)}:{e.line}", f"lint: {e.error}")

    # 2. Modules and includes (the JSON of `reftrace info modules`).
    for u in parsed.unresolved_includes:
        problems.add("includes", f"unresolved include {u.to_dict()}")
    modules = [m.to_dict() for m in parsed.results]
    if not modules:
        problems.add("reftrace", "no module parsed")
    main_nf = pipe / "main.nf"
    main_mod = next((m for m in modules if Path(m["path"]).resolve() == main_nf), None)
    defined = {p["name"]: m["path"] for m in modules for p in m.get("processes", [])}
    included, aliases = set(), set()
    if main_mod is None:
        problems.add("main.nf", "not parsed")
    else:
        for inc in main_mod.get("includes", []):
            for item in inc["items"]:
                if item["name"] not in defined:
                    problems.add(f"main.nf:{inc['line']}", f"includes {item['name']}, which no module defines")
                included.add(item["name"])
                aliases.add(item.get("alias") or item["name"])
    for name, path in defined.items():
        if name not in included:
            problems.add(Path(path).name, f"process {name} is never included by main.nf")

    # 3. Processes, binaries and flags.
    help_cache = {}
    tools = check_processes(pipe, modules, bin_dir, problems, help_cache)
    keys = stage_args(main_nf, bin_dir, problems, help_cache) if main_nf.exists() else set()
    mc = pipe / "conf" / "modules.config"
    if mc.exists():
        for n, line in enumerate(mc.read_text().split("\n"), start=1):
            for name in re.findall(r"withName:\s*'([A-Za-z0-9_]+)'", line):
                if name not in aliases:
                    problems.add(f"conf/modules.config:{n}", f"withName '{name}' matches no process of main.nf")
            for a1, a2 in re.findall(r"meta\.args(?:\.(\w+)|\['(\w+)'\])", line):
                if (a1 or a2) not in keys:
                    problems.add(f"conf/modules.config:{n}", f"meta.args.{a1 or a2} is not built by stageArgs")

    # 4. Parameters and schema.
    have = json.loads(schema_file.read_text()) if schema_file.exists() else None
    if have != want:
        problems.add("nextflow_schema.json", "differs from schemas/config.schema.yaml: run scripts/check_nextflow.py --write-schema")
    check_params(pipe, cfg, problems)
    version = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    for path in pipe.rglob("*.nf"):
        for tag in re.findall(r'container\s+"[^":]+:([^"]+)"', path.read_text()):
            if version and tag != version.group(1):
                problems.add(path.relative_to(pipe), f"container tag {tag} is not the workspace version {version.group(1)}")
    check_conda(pipe, version.group(1) if version else None, problems)

    if problems.items:
        for p in problems.items:
            print(f"check_nextflow: {p}")
        print(f"check_nextflow: FAILED ({len(problems.items)} problems)")
        return 1
    flags = sum(len(v or ()) for v in help_cache.values())
    print(
        f"check_nextflow: OK: {len(modules)} files parsed, {len(defined)} processes "
        f"({', '.join(sorted(set(tools.values())))}), {len(keys)} stage argument sets, "
        f"flags checked against {len(help_cache)} binaries' --help ({flags} flags known)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
