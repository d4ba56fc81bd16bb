#!/usr/bin/env bash
# Builds cellweave with the CUDA backend (`--device cuda` in cellweave-train, -embed, -impute):
#   scripts/build-cuda.sh [extra cargo build arguments]
# No GPU is needed to build. The CUDA 13.0 toolkit comes from PyPI wheels (nvcc, the runtime
# headers, CCCL, cuBLAS, cuRAND, NVRTC) installed once into a venv under $HOME/.cache; the driver
# library libcuda.so is not on PyPI, so a link-time stub is generated from the toolkit's cuda.h
# (as the toolkit's own lib/stubs/libcuda.so is): the binaries load the real driver when they start.
#
# Environment:
#   CARGO_TARGET_DIR     where to build (default: the workspace's target/); the binaries land in
#                        $CARGO_TARGET_DIR/release. Only candle-core and the crates above it get a
#                        second (CUDA) copy there; the rest of the cache is shared with the CPU build.
#   CUDA_COMPUTE_CAP     GPU architecture of the kernels (default: from nvidia-smi if a GPU is
#                        visible, else 80 = Ampere; 90 = Hopper H100/H200). The PTX runs on that
#                        architecture and every later one.
#   CELLWEAVE_CUDA_VENV  the toolkit venv (default: $HOME/.cache/cellweave-cuda)
# Prints the directory of the built binaries on its last line.
# To run them: the NVIDIA driver, plus libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and
# libnvrtc.so.13 on the library path (e.g. the same wheels: see docs/gpu.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${CELLWEAVE_CUDA_VENV:-$HOME/.cache/cellweave-cuda}"
# One CUDA release for every wheel: nvcc, headers and libraries of 13.0 (driver >= 580).
wheels=(
    "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88"
    "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-nvrtc==13.0.88"
    "nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35"
)
stamp="$venv/.cellweave-wheels"
if [ "$(cat "$stamp" 2>/dev/null)" != "${wheels[*]}" ]; then
    echo "build-cuda: installing the CUDA toolkit wheels into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${wheels[@]}"
    echo "${wheels[*]}" >"$stamp"
fi
root="$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)"
[ -x "$root/bin/nvcc" ] || { echo "build-cuda: no nvcc in $root/bin (toolkit wheels broken?)" >&2; exit 1; }

# Link-time libraries (made anew each time, in well under a second): unversioned names for
# -lcudart/-lcublas/..., and the libcuda stub.
link="$venv/link"
mkdir -p "$link"
for l in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
    ln -sf "$root/lib/lib$l" "$link/lib${l%.so.*}.so"
done
# Every driver entry point cuda.h declares (after its versioning macros), as a function that
# returns CUDA_ERROR_STUB_LIBRARY (34), like the toolkit's own stub.
gcc -E -P -I"$root/include" "$root/include/cuda.h" |
    grep -oE '^ *(extern +)?CUresult +(CUDAAPI +)?cu[A-Za-z0-9_]+ *\(' |
    sed -E 's/.*(cu[A-Za-z0-9_]+) *\($/int \1(void) { return 34; }/' | sort -u >"$link/cuda_stub.c"
[ -s "$link/cuda_stub.c" ] || { echo "build-cuda: no driver entry points found in $root/include/cuda.h" >&2; exit 1; }
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/cuda_stub.c"

if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
    CUDA_COMPUTE_CAP=80
    if command -v nvidia-smi >/dev/null && cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1)" && [ -n "$cap" ]; then
        CUDA_COMPUTE_CAP="${cap/./}"
    fi
fi
export CUDA_COMPUTE_CAP
export PATH="$root/bin:$PATH" CUDA_PATH="$root" CUDA_ROOT="$root" CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$link${LIBRARY_PATH:+:$LIBRARY_PATH}"
echo "build-cuda: nvcc $("$root/bin/nvcc" --version | grep -oE 'release [0-9.]+'), sm_$CUDA_COMPUTE_CAP" >&2
cargo build --release --workspace --features cellweave-models/cuda "$@"
echo "${CARGO_TARGET_DIR:-$(pwd)/target}/release"
