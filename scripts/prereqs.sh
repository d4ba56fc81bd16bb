# Sourced by scripts/demo.sh and scripts/test.sh: installs the system packages the build and the
# tests need (apt-get; Debian/Ubuntu) and puts cargo on PATH, or stops with what is missing.
need=()
for p in libhdf5-dev pkg-config fonts-dejavu-core strace; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
command -v python3 >/dev/null || need+=(python3 python3-venv)
if ((${#need[@]})); then
    echo "cellweave: installing ${need[*]} (apt-get)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "cellweave: no Rust toolchain: install it from https://rustup.rs" >&2; exit 1; }
