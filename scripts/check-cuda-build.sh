#!/usr/bin/env bash
# Checks a CUDA build (scripts/build-cuda.sh) on a machine without a GPU, as CI runs it:
#   scripts/check-cuda-build.sh BIN_DIR
# With the toolkit wheels' libraries and the driver stub on the library path (the stub answers
# every driver call with CUDA_ERROR_STUB_LIBRARY, as on a machine with the toolkit but no driver):
# every library of cellweave-train, -embed and -impute resolves (ldd), the CUDA build trains on
# the CPU (--device cpu), and --device cuda stops with a one-line error, no panic.
set -euo pipefail

bin="$1"
venv="${CELLWEAVE_CUDA_VENV:-$HOME/.cache/cellweave-cuda}"
root="$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/lib"
ln -s "$venv/link/libcuda.so" "$work/lib/libcuda.so.1"
export LD_LIBRARY_PATH="$work/lib:$root/lib"

fail() { echo "check-cuda-build: $*" >&2; exit 1; }
for t in train embed impute; do
    ldd "$bin/cellweave-$t" >"$work/ldd" || fail "ldd $bin/cellweave-$t failed"
    if grep -q "not found" "$work/ldd"; then
        fail "cellweave-$t: $(grep "not found" "$work/ldd" | tr -s ' \t' ' ' | paste -sd ';')"
    fi
    grep -q "libcuda.so.1" "$work/ldd" || fail "cellweave-$t does not link libcuda.so.1: not a CUDA build?"
done
echo "check-cuda-build: train, embed, impute link $(grep -oE 'lib(cuda|cublas|cublasLt|curand|nvrtc|cudart)\.so\.[0-9]+' "$work/ldd" | sort -u | paste -sd ' ')"

"$bin/cellweave-simulate" -q -o "$work/raw.arrow" --cells 300 --genes 200 --batches 2 --cell-types 3 --seed 1
"$bin/cellweave-normalize" -q "$work/raw.arrow" -o "$work/norm.arrow"
"$bin/cellweave-pairs" -q "$work/norm.arrow" -o "$work/pairs.arrow"
"$bin/cellweave-train" -q "$work/norm.arrow" --pairs "$work/pairs.arrow" -o "$work/m" \
    --embedding "$work/e.arrow" --epochs 2 --device cpu --seed 0
test -s "$work/e.arrow" || fail "cellweave-train --device cpu wrote no embedding"
"$bin/cellweave-impute" -q "$work/raw.arrow" --method late -o "$work/i.arrow" --epochs 1 --device cpu --seed 0
test -s "$work/i.arrow" || fail "cellweave-impute --device cpu wrote no output"

for t in train impute; do
    if [ "$t" = train ]; then
        args=("$work/norm.arrow" --pairs "$work/pairs.arrow" -o "$work/m2" --embedding "$work/e2.arrow")
    else
        args=("$work/raw.arrow" --method late -o "$work/i2.arrow")
    fi
    rc=0
    "$bin/cellweave-$t" -q "${args[@]}" --epochs 1 --device cuda --seed 0 2>"$work/err" || rc=$?
    [ "$rc" = 1 ] || fail "cellweave-$t --device cuda without a GPU: exit $rc, expected 1 ($(head -c 300 "$work/err"))"
    [ "$(wc -l <"$work/err")" = 1 ] || fail "cellweave-$t --device cuda: not one line: $(head -c 300 "$work/err")"
    grep -q "^cellweave-$t: error:.*CUDA" "$work/err" || fail "cellweave-$t --device cuda: $(cat "$work/err")"
    echo "check-cuda-build: without a GPU, cellweave-$t --device cuda says: $(cat "$work/err")"
done
echo "check-cuda-build: ok"
