#!/usr/bin/env bash
# UMAP timing of cellweave-plot on synthetic embeddings (20 Gaussian clusters in 50-D),
# one thread, as a workflow step runs it. Prints one row per size with the stage times.
# Usage: bench/plot_umap.sh [N ...]   (default: 5000 50000; build with cargo build --release first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CELLWEAVE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}/cellweave-plot
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(5000 50000)
printf "%8s %6s %10s %10s %10s %10s %10s %10s\n" cells dim knn_s graph_s init_s layout_s umap_s total_s
for n in "${sizes[@]}"; do
  awk -v n="$n" -v d=50 -v k=20 'BEGIN{srand(42); for(c=0;c<k;c++) for(t=0;t<d;t++) C[c,t]=(rand()-0.5)*20;
    printf "cell_id"; for(t=0;t<d;t++) printf "\tPC%d", t; printf "\n";
    for(i=0;i<n;i++){c=i%k; printf "cell%d", i; for(t=0;t<d;t++){u=rand(); if(u<1e-12)u=1e-12;
      z=sqrt(-2*log(u))*cos(6.283185307*rand()); printf "\t%.4f", C[c,t]+2*z} printf "\n"}}' > "$tmp/emb.tsv"
  awk -v n="$n" 'BEGIN{print "cell_id\tbatch\tcluster"; for(i=0;i<n;i++) printf "cell%d\tb%d\tc%d\n", i, int(i/7)%3, i%20}' > "$tmp/obs.tsv"
  start=$(date +%s.%N)
  "$bin" "$tmp/emb.tsv" --obs "$tmp/obs.tsv" --color cluster -o "$tmp/umap.png" --threads 1 2> "$tmp/log"
  end=$(date +%s.%N)
  t() { grep "^umap: $1:" "$tmp/log" | awk '{print $(NF-1)}'; }
  printf "%8s %6s %10s %10s %10s %10s %10s %10.2f\n" "$n" 50 "$(t neighbours)" "$(t 'fuzzy graph')" \
    "$(t 'spectral initialisation')" "$(t layout)" "$(grep '^umap: [0-9]' "$tmp/log" | awk '{print $2}')" "$(echo "$end - $start" | bc)"
done
