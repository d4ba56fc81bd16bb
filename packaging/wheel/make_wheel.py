#!/usr/bin/env python3
"""Write the `cellweave` wheel: every cellweave-* binary as a script of the wheel.

    make_wheel.py --bin-dir DIR --version 0.1.0 --tag manylinux_2_28_x86_64 --out-dir dist

A standard wheel (PEP 427) with no Python code: the binaries go to
`cellweave-<version>.data/scripts/`, which pip installs into the environment's bin/ directory
(the venv's PATH), as wheels of Rust command-line tools do. The metadata names the licenses
(both files ship in .dist-info) and the README's summary. Python standard library only.
"""

import argparse
import base64
import hashlib
import io
import re
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUMMARY = (
    "Single-cell RNA-seq integration (CLAIRE) and imputation (LATE/TRANSLATE) as small "
    "command-line tools exchanging Arrow files"
)
LICENSES = ("LICENSE-MIT", "LICENSE-APACHE")
# A fixed timestamp (1980-01-01, the earliest a zip can hold) keeps the wheel reproducible.
EPOCH = (1980, 1, 1, 0, 0, 0)


def fail(msg):
    print(f"make_wheel.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def metadata(version, tools):
    lines = [
        "Metadata-Version: 2.1",
        "Name: cellweave",
        f"Version: {version}",
        f"Summary: {SUMMARY}",
        "License: MIT OR Apache-2.0",
        "Requires-Python: >=3.8",
        "Classifier: Environment :: Console",
        "Classifier: Intended Audience :: Science/Research",
        "Classifier: License :: OSI Approved :: MIT License",
        "Classifier: License :: OSI Approved :: Apache Software License",
        "Classifier: Operating System :: POSIX :: Linux",
        "Classifier: Programming Language :: Rust",
        "Classifier: Topic :: Scientific/Engineering :: Bio-Informatics",
        "Description-Content-Type: text/markdown",
        "",
        "# cellweave",
        "",
        SUMMARY + ". Installs these commands onto the environment's PATH:",
        "",
    ]
    lines += [f"- `{t}`" for t in tools]
    lines += ["", "Each has `--help` and `--version`. Licensed MIT OR Apache-2.0.", ""]
    return "\n".join(lines)


def wheel_file(tag):
    return "\n".join(
        [
            "Wheel-Version: 1.0",
            "Generator: cellweave packaging/wheel/make_wheel.py",
            "Root-Is-Purelib: false",
            f"Tag: py3-none-{tag}",
            "",
        ]
    )


def write_wheel(bin_dir, version, tag, out_dir):
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*([a-z]+[0-9]*)?", version):
        fail(f"--version {version!r}: expected a PEP 440 version such as 0.1.0")
    tools = sorted(p for p in bin_dir.glob("cellweave-*") if p.is_file() and not p.suffix)
    tools = [p for p in tools if p.stat().st_mode & 0o111]
    if not tools:
        fail(f"{bin_dir}: no executable cellweave-* binaries (build them first)")
    dist_info = f"cellweave-{version}.dist-info"
    data = f"cellweave-{version}.data/scripts"
    entries = [(f"{data}/{p.name}", p.read_bytes(), 0o755) for p in tools]
    for name in LICENSES:
        path = REPO / name
        if not path.is_file():
            fail(f"{path}: missing (the wheel ships both license files)")
        entries.append((f"{dist_info}/{name}", path.read_bytes(), 0o644))
    names = [p.name for p in tools]
    entries.append((f"{dist_info}/METADATA", metadata(version, names).encode(), 0o644))
    entries.append((f"{dist_info}/WHEEL", wheel_file(tag).encode(), 0o644))
    record = io.StringIO()
    for name, body, _ in entries:
        record.write(f"{name},{record_hash(body)},{len(body)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode(), 0o644))

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"cellweave-{version}-py3-none-{tag}.whl"
    tmp = wheel.with_suffix(".whl.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, body, mode in entries:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, body)
    tmp.replace(wheel)
    return wheel, names


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", type=Path, required=True, help="folder with the cellweave-* binaries")
    ap.add_argument("--version", required=True, help="the package version (the workspace's)")
    ap.add_argument("--tag", default="linux_x86_64", help="platform tag (default linux_x86_64)")
    ap.add_argument("--out-dir", type=Path, default=Path("dist"))
    args = ap.parse_args()
    wheel, names = write_wheel(args.bin_dir, args.version, args.tag, args.out_dir)
    size = wheel.stat().st_size / 1e6
    print(f"make_wheel.py: {wheel} ({size:.1f} MB, {len(names)} binaries)", file=sys.stderr)
    print(wheel)


if __name__ == "__main__":
    main()
