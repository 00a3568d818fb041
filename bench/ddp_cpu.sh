#!/usr/bin/env bash
# The train stage in 1 process and in 2 (train.nproc 2: torchrun, DDP over gloo) on this CPU, same params,
# same global batch: wall-clock of the whole stage command and the median training img/s of its reports.
# On a 2-core CPU two processes are not expected to be faster; the point of the gloo path is correctness.
#   bench/ddp_cpu.sh [KIMG] [DATA]     (default 6.4 kimg = 6400 / train.batch_size steps; data/mnist)
# params.yaml's train section as it is, on the CPU, without the in-training evaluation (it would time the
# judge, and needs the evaluator stage's files) and with reports every 10 steps.
# Each process runs one torch thread (OMP_NUM_THREADS=1), so 2 processes use 2 cores and 1 process one;
# a third run gives the 1 process both cores (2 threads). Outputs and a throw-away MLflow store in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
kimg="${1:-6.4}"
data="$(realpath "${2:-data/mnist}")"
root="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db" PATH="$root/.venv/bin:$PATH"

run() {  # NAME NPROC THREADS
    local dir="$work/$1"
    mkdir -p "$dir"
    python - "$root/params.yaml" "$dir/params.yaml" "$2" "$kimg" <<'PY'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
p["train"].update(device="cpu", nproc=int(sys.argv[3]), kimg=float(sys.argv[4]), log_every=10,
                  image_every=100000, ckpt_every=100000)
p["train"]["eval"]["every_kimg"] = 0
yaml.safe_dump(p, open(sys.argv[2], "w"), sort_keys=False)
PY
    local start end
    start="$(date +%s.%N)"
    (cd "$dir" && OMP_NUM_THREADS="$3" python "$root/stages/train.py" --params params.yaml --data "$data" \
        > stage.log 2>&1) || { cat "$dir/stage.log"; exit 1; }
    end="$(date +%s.%N)"
    python - "$1" "$2" "$3" "$start" "$end" "$dir/results/train/losses.tsv" <<'PY'
import statistics, sys
name, nproc, threads, start, end, tsv = sys.argv[1:]
rows = [line.split("\t") for line in open(tsv).read().splitlines()]
col = {key: i for i, key in enumerate(rows[0])}
rates = [float(r[col["img_per_s"]]) for r in rows[2:]]  # the first report includes warm-up
last = rows[-1]
print(f"| {name} | {nproc} | {threads} | {float(end) - float(start):.1f} s | {statistics.median(rates):.0f} | "
      f"{last[col['step']]} | {float(last[col['loss_d']]):.4f} | {float(last[col['loss_g']]):.4f} |")
PY
}

echo "| run | processes | threads each | stage wall-clock | median img/s | steps | last loss_d | last loss_g |"
echo "|---|---|---|---|---|---|---|---|"
run one-process 1 1
run two-processes 2 1
run one-process-2-threads 1 2
