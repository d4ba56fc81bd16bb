#!/usr/bin/env bash
# Create the Python virtual environment of the workflows (Snakemake, reftrace, anndata):
#   scripts/setup.sh            -> .venv in the repository
#   CELLWEAVE_VENV=DIR scripts/setup.sh
#                               -> the venv in DIR (e.g. a cache outside the clone), and .venv a
#                                  symlink to it, so that everything finds it at .venv
# Re-running is cheap: nothing is installed when the venv already holds these pins.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$repo/scripts/requirements-workflows.txt"
venv="${CELLWEAVE_VENV:-$repo/.venv}"
stamp="$venv/.cellweave-requirements"

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "setup.sh: installing python3-venv with apt-get" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq python3 python3-venv >/dev/null; fi
fi

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
    echo "setup.sh: $venv is up to date" >&2
elif [ -x "$venv/bin/python" ] && [ -f "$stamp" ]; then
    # The pins changed: install what differs into the venv in place (no rebuild from scratch,
    # so other checkouts sharing this venv keep working meanwhile).
    echo "setup.sh: updating $venv" >&2
    "$venv/bin/python" -m pip install --quiet -r "$req"
    cp "$req" "$stamp"
else
    echo "setup.sh: creating $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$req"
    cp "$req" "$stamp"
fi

if [ "$venv" != "$repo/.venv" ]; then
    if [ -e "$repo/.venv" ] && [ ! -L "$repo/.venv" ]; then
        echo "setup.sh: $repo/.venv exists and is not a symlink; leaving it" >&2
    else
        ln -sfn "$venv" "$repo/.venv"
    fi
fi
"$venv/bin/snakemake" --version >/dev/null
echo "setup.sh: snakemake $("$venv/bin/snakemake" --version), $("$venv/bin/reftrace" --version)" >&2
