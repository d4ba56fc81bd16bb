#!/usr/bin/env bash
# Local stand-in for the SLURM status query (see config.yaml): status.sh JOBID prints
# running, success or failed. A job that exceeded its mem_mb request has failed (the reason
# is written to the job's verdict file).
set -euo pipefail
dir="${CELLWEAVE_CLUSTER_DIR:-$PWD/.snakemake/local-cluster}/$1"
if [ ! -d "$dir" ]; then echo failed; exit 0; fi
if [ ! -f "$dir/exit" ]; then echo running; exit 0; fi
rc="$(cat "$dir/exit")"
mem_mb="$(awk -F'\t' '$1 == "mem_mb" {print $2}' "$dir/request.tsv")"
rss_kb="$(awk -F'\t' '$1 == "max_rss_kb" {print $2}' "$dir/usage.tsv" 2>/dev/null || true)"
if [ "$rc" != 0 ]; then
    echo "exit status $rc" > "$dir/verdict"; echo failed
elif [ -n "$mem_mb" ] && [ "$mem_mb" -gt 0 ] && [ -n "$rss_kb" ] && [ "$rss_kb" -gt $((mem_mb * 1024)) ]; then
    echo "peak memory ${rss_kb} kB over the ${mem_mb} MB requested" > "$dir/verdict"; echo failed
else
    echo ok > "$dir/verdict"; echo success
fi
