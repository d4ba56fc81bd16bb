#!/usr/bin/env bash
# Local stand-in for sbatch (see config.yaml): submit.sh JOBSCRIPT -> prints a job id.
# The job runs detached in its own session with RAYON_NUM_THREADS/OMP_NUM_THREADS set to the
# rule's threads, under /usr/bin/time for its peak memory; status.sh reads the result.
set -euo pipefail
jobscript="$1"
# Snakemake writes the job's properties as JSON on a "# properties = {...}" line.
read -r rule threads mem_mb < <(python3 - "$jobscript" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("# properties = "):
        p = json.loads(line[len("# properties = "):])
        r = p.get("resources", {})
        print(p.get("rule", "group"), p.get("threads", 1), r.get("mem_mb", 0))
        break
else:
    sys.exit("submit.sh: no '# properties' line in " + sys.argv[1])
PY
)
root="${CELLWEAVE_CLUSTER_DIR:-$PWD/.snakemake/local-cluster}"
mkdir -p "$root"
id="$(date +%s%N)-$$"
dir="$root/$id"
mkdir "$dir"
cp "$jobscript" "$dir/jobscript.sh"
printf 'rule\t%s\nthreads\t%s\nmem_mb\t%s\n' "$rule" "$threads" "$mem_mb" > "$dir/request.tsv"
setsid env RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" bash -c '
    echo $$ > "$1/pid"
    /usr/bin/time -f "max_rss_kb\t%M\nwall_s\t%e\nuser_s\t%U\nsys_s\t%S" -o "$1/usage.tsv" \
        bash "$1/jobscript.sh" > "$1/output.log" 2>&1
    echo $? > "$1/exit.tmp" && mv "$1/exit.tmp" "$1/exit"
' _ "$dir" < /dev/null > /dev/null 2>&1 &
echo "$id"
