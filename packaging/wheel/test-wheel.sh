#!/usr/bin/env bash
# Test the install path of the `cellweave` wheel as a user meets it:
#   packaging/wheel/test-wheel.sh WHEEL [EXPECTED_COMMIT]
# 1. a fresh venv, `pip install WHEEL` (no index, nothing else),
# 2. every installed binary needs only the C runtime (packaging/wheel/check-runtime-libs.sh) and
#    prints its version (with EXPECTED_COMMIT, when given, in it),
# 3. the demo chain from those binaries, with a PATH that holds the venv and the base system
#    only (no Rust toolchain, no target folder): simulate -> export to .h5ad -> import it
#    (HDF5 written and read by the static HDF5) -> filter -> normalize -> hvg -> pairs -> train
#    -> score -> export integrated.h5ad; every output must exist, the scores must have rows.
# Small sizes (1,500 cells x 1,000 genes, 3 batches): a minute or two on 2 cores.
set -euo pipefail

wheel="${1:?usage: test-wheel.sh WHEEL [EXPECTED_COMMIT]}"
commit="${2:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { echo "test-wheel.sh: $*" >&2; }
fail() { say "error: $*"; exit 1; }
[ -f "$wheel" ] || fail "$wheel: no such wheel"
wheel="$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-index --no-deps "$wheel"
bins=("$work"/venv/bin/cellweave-*)
[ -x "${bins[0]}" ] || fail "pip installed no cellweave-* binary into $work/venv/bin"
say "installed ${#bins[@]} binaries: $(cd "$work/venv/bin" && echo cellweave-*)"
"$here/check-runtime-libs.sh" "${bins[@]}"

# Only the venv and the base system on PATH: no cargo, no build folder.
export PATH="$work/venv/bin:/usr/local/bin:/usr/bin:/bin"
unset LD_LIBRARY_PATH CARGO_TARGET_DIR
if command -v cargo >/dev/null || command -v rustc >/dev/null; then
    fail "a Rust toolchain is on the test PATH ($PATH)"
fi
for b in "${bins[@]}"; do
    name="$(basename "$b")"
    v="$("$name" --version)"
    [[ "$v" =~ ^$name\ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "$name --version printed '$v'"
    if [ -n "$commit" ] && [[ "$v" != *"(git $commit)"* ]]; then
        fail "$name --version printed '$v', expected the commit $commit"
    fi
done
say "$(cellweave-train --version)"

cd "$work"
run() { say "$*"; "$@" --quiet; }
run cellweave-simulate --cells 1500 --genes 1000 --batches 3 --cell-types 4 --seed 1 -o sim.arrow
run cellweave-export sim.arrow -o sim.h5ad
run cellweave-import sim.h5ad --batch-key batch -o raw.arrow
run cellweave-filter raw.arrow --min-cells 3 -o filtered.arrow
run cellweave-normalize filtered.arrow -o norm.arrow
run cellweave-hvg norm.arrow --n-top-genes 500 --batch-key batch --genes-out hvg_genes.tsv -o hvg.arrow
run cellweave-pairs hvg.arrow -o pairs.arrow
run cellweave-train hvg.arrow --pairs pairs.arrow --epochs 6 --batch-size 128 --seed 1 \
    -o model --embedding claire.arrow
run cellweave-score claire.arrow --unintegrated hvg.arrow --label-key cell_type --batch-key batch \
    --tsv scores.tsv -o scores.arrow
run cellweave-export hvg.arrow --counts filtered.arrow --embedding claire.arrow -o integrated.h5ad
for f in sim.h5ad raw.arrow filtered.arrow norm.arrow hvg.arrow pairs.arrow claire.arrow \
    scores.arrow scores.tsv integrated.h5ad; do
    [ -s "$f" ] || fail "the demo chain wrote no $f"
done
rows=$(($(wc -l <scores.tsv) - 1))
[ "$rows" -ge 1 ] || fail "scores.tsv has no metric rows"
say "demo chain ran from the wheel's binaries: $rows score rows, integrated.h5ad $(du -h integrated.h5ad | cut -f1)"
