#!/usr/bin/env bash
# Check that each given binary needs no shared library beyond the C runtime (what every Linux
# has): the wheel's binaries must run on a machine without HDF5, libcurl, OpenSSL, ...
#   packaging/wheel/check-runtime-libs.sh BINARY...
# Reads `ldd`; exits 1 naming each binary and each library outside the list.
set -euo pipefail

[ "$#" -gt 0 ] || { echo "check-runtime-libs.sh: error: no binaries given" >&2; exit 1; }
# The C runtime: libc, libm, libgcc_s, the dynamic loader, and libpthread/libdl/librt (separate
# libraries on glibc before 2.34), plus the kernel's vDSO.
allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|/lib64/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2|/lib/ld-linux-aarch64\.so\.1|ld-linux-aarch64\.so\.1)$'
bad=0
for bin in "$@"; do
    libs="$(ldd "$bin" 2>&1)" || { echo "check-runtime-libs.sh: error: $bin: ldd failed: $libs" >&2; bad=1; continue; }
    while read -r lib _; do
        [ -n "$lib" ] || continue
        if ! [[ "$lib" =~ $allowed ]]; then
            echo "check-runtime-libs.sh: error: $bin needs $lib (only the C runtime is allowed)" >&2
            bad=1
        fi
    done <<<"$libs"
done
[ "$bad" = 0 ] || exit 1
echo "check-runtime-libs.sh: $# binaries need only the C runtime" >&2
