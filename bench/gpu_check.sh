#!/usr/bin/env bash
# GPU check of the fast path (issue 5), for a machine with an NVIDIA GPU and PyTorch but no network and none
# of this project's other dependencies. Prepare here with `make wheels` (wheels/: the missing packages and
# the MNIST download cache), carry wheels/ along with the working tree, and run from the repository root:
#     bash bench/gpu_check.sh          (device tool: command "bash bench/gpu_check.sh", carry ["wheels"])
# Steps, each under a time limit and all of them within DEADLINE (8 minutes): install what is missing from
# wheels/; MNIST from the carried cache; the throughput benchmark on CUDA (fast path, then eager fp32);
# the CUDA test of the fast path; the whole pipeline with `dvc exp run -S ...` (dvc repro with overrides) at
# a GPU-sized budget; a short table. Outputs (7 files) go to $OUT when set, else gpu_check_out/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
T0=$SECONDS
DEADLINE=${DEADLINE:-470}  # seconds; the table needs a few more
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
# Scratch space of this run only (mktemp -d: a fresh, private directory): the fallback site-packages and the
# python wrapper go on PYTHONPATH and PATH, so a fixed /tmp path would run whatever another user or an
# earlier run left there. Removed on exit.
GC_TMP=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
trap 'rm -rf "$GC_TMP"' EXIT
export GC_SITE=$GC_TMP/site GC_BIN=$GC_TMP/bin
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PY=${PYTHON:-python3}
# the same list as the Makefile's WHEEL_DEPS (no spaces inside an entry: it is split on spaces)
export WHEEL_DEPS="dvc>=3.50 mlflow-skinny>=3.17 sqlalchemy alembic pydantic>=2.5 typer>=0.12 rich>=13 pyyaml"
export KIMG=${KIMG:-2000}  # training length of the pipeline run: ~33 MNIST epochs, ~20 s at 100k img/s

say() { printf '[gpu_check %3ds] %s\n' $((SECONDS - T0)) "$*"; }
declare -A STATUS
ORDER=()
step() {  # step NAME LIMIT_SECONDS CMD...: CMD under min(LIMIT, time left before DEADLINE); records ok/FAILED
    local name=$1 limit=$2 t=$SECONDS rc=0
    shift 2
    ((limit > DEADLINE - (SECONDS - T0))) && limit=$((DEADLINE - (SECONDS - T0)))
    ORDER+=("$name")
    if ((limit <= 5)); then STATUS[$name]="skipped (out of time)"; say "$name: skipped"; return; fi
    say "$name (at most ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    if ((rc == 0)); then STATUS[$name]="ok, $((SECONDS - t)) s"
    elif ((rc == 124 || rc == 137)); then STATUS[$name]="TIMED OUT after ${limit} s"
    else STATUS[$name]="FAILED (exit $rc), $((SECONDS - t)) s"; fi
    say "$name: ${STATUS[$name]}"
}

# --- the machine ---------------------------------------------------------------------------------------------
nvidia-smi -L 2>/dev/null || true
"$PY" - <<'EOF' || { say "no CUDA GPU visible to $PY: nothing to check"; exit 1; }
import sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
assert torch.cuda.is_available()
print(f"gpu: {torch.cuda.get_device_name()}, bf16: {torch.cuda.is_bf16_supported()}")
EOF

# --- 1. what is missing, from wheels/ (no network) ------------------------------------------------------------
install() {
    "$PY" -c "import dvc, mlflow, pydantic, sqlalchemy, alembic, typer, rich, yaml" 2>/dev/null && return 0
    ls wheels/*.whl >/dev/null 2>&1 || { echo "no wheels/: run 'make wheels' where there is a network"; return 1; }
    local py_tag
    py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    ls wheels/*-"$py_tag"-*.whl >/dev/null 2>&1 ||
        echo "warning: no $py_tag wheels in wheels/ (made for another python? 'make wheels WHEELS_PY=...')"
    # Resolve against what is installed: packages the image already has in a fitting version stay as they are.
    # shellcheck disable=SC2086  # WHEEL_DEPS is a list of words
    "$PY" -m pip install -q --no-index --find-links wheels --no-cache-dir $WHEEL_DEPS || {
        echo "resolution failed; installing every carried wheel as is into $GC_SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-cache-dir --target "$GC_SITE" wheels/*.whl || return 1
    }
}
export -f install
export PYTHONPATH=$PWD/src:$GC_SITE  # ganforge from the tree: pyproject pins a torch this machine need not have
step install 90 bash -c install
# dvc's stage commands run `python`: a wrapper, not a symlink (a symlinked venv python loses its venv)
mkdir -p "$GC_BIN" && printf '#!/bin/sh\nexec %q "$@"\n' "$(command -v "$PY")" >"$GC_BIN/python"
chmod +x "$GC_BIN/python"
export PATH=$GC_BIN:$PATH

# --- 2. MNIST: the download stage reads the carried cache instead of the network ----------------------------
export GANFORGE_CACHE=$GC_TMP/ganforge-cache
mkdir -p "$GANFORGE_CACHE"
if ! tar xzf wheels/mnist-cache.tar.gz -C "$GANFORGE_CACHE"; then
    say "no wheels/mnist-cache.tar.gz: the download stage will try the network"
fi
step data 60 python stages/download.py --params params.yaml --out data/mnist

# --- 3. throughput on CUDA: the project's step (fast path) and the reference loop, then the eager step --------
step bench 100 python bench/throughput.py --device cuda --steps 4000 --ref-steps 300 --warmup 60 \
    --out "$OUT/throughput.json"
step bench_eager 60 python bench/throughput.py --device cuda --fast off --steps 1000 --ref-steps 100 --warmup 60 \
    --out "$OUT/throughput_eager.json"

# --- 4. the fast path's CUDA test: captured and replayed, losses follow the eager fp32 run -------------------
step cuda_test 120 python -m pytest -q -p no:cacheprovider tests/test_fast.py

# --- 5. the whole pipeline at a GPU-sized budget ---------------------------------------------------------------
repro() {
    local overrides=("train.kimg=$KIMG" train.device=cuda train.fast=auto train.log_every=200
                     train.image_every=2000 train.ckpt_every=2000)
    if ! git rev-parse --git-dir >/dev/null 2>&1 && command -v git >/dev/null; then  # tree copied without .git
        git init -q && git add -A && git -c user.name=gpu -c user.email=gpu@check commit -qm "gpu check" || return 1
    fi
    if git rev-parse --git-dir >/dev/null 2>&1; then
        python -m dvc exp run "${overrides[@]/#/-S}"  # = dvc repro with the params overridden
    else  # no git at all: the same overrides written into params.yaml, then a plain dvc repro without SCM
        python - "${overrides[@]}" <<'PYEOF' || return 1
import sys, yaml
params = yaml.safe_load(open("params.yaml"))
for item in sys.argv[1:]:
    dotted, value = item.split("=", 1)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = yaml.safe_load(value)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
PYEOF
        python -m dvc config --local core.no_scm true && python -m dvc repro
    fi
}
export -f repro
step repro 300 bash -c repro
for f in results/evaluate/metrics.json results/train/losses.tsv results/train/samples.png; do
    [[ -f $f ]] && cp "$f" "$OUT/"
done

# --- the table ---------------------------------------------------------------------------------------------------
for name in "${ORDER[@]}"; do printf '%s\t%s\n' "$name" "${STATUS[$name]}"; done >"$GC_TMP/status.tsv"
python - "$OUT" "$((SECONDS - T0))" "$GC_TMP/status.tsv" <<'EOF' | tee "$OUT/summary.md"
import csv, json, statistics, sys
from pathlib import Path
out, seconds = Path(sys.argv[1]), int(sys.argv[2])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None
rows = [("step", "result", "target")]
rows += [(n, s, "") for n, s in csv.reader(open(sys.argv[3]), delimiter="\t")]
fast, eager = load("throughput.json"), load("throughput_eager.json")
if fast:
    rows += [("project img/s (fast=auto)", f"{fast['project']['img_per_s']:,.0f}", ">= 100,000"),
             ("reference img/s", f"{fast['reference']['img_per_s']:,.0f}", ""),
             ("ratio project / reference", f"{fast['ratio']:.1f}x", ">= 20x"),
             ("fast path", "; ".join(fast["fast_path_log"]) or "no log line", "captured"),
             ("gpu", fast["machine"].get("gpu", "?") + ", torch " + fast["machine"]["torch"], "")]
if eager:
    rows.append(("project img/s (fast=off, eager fp32)", f"{eager['project']['img_per_s']:,.0f}", ""))
try:
    tsv = list(csv.DictReader(open(out / "losses.tsv"), delimiter="\t"))
    rows.append(("train stage img/s (median of reports)",
                 f"{statistics.median(float(r['img_per_s']) for r in tsv):,.0f}", ""))
    rows.append(("train stage last losses", f"loss_d {tsv[-1]['loss_d']}, loss_g {tsv[-1]['loss_g']}", ""))
except (OSError, KeyError, ValueError, statistics.StatisticsError):
    pass
metrics = load("metrics.json")
if metrics:
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    rows.append(("evaluate metrics", ", ".join(f"{k} {v:.4g}" for k, v in sorted(flat.items())[:8]), ""))
rows.append(("total time", f"{seconds} s", "< 480 s"))
width = [max(len(r[i]) for r in rows) for i in range(3)]
for i, r in enumerate(rows):
    print("| " + " | ".join(c.ljust(w) for c, w in zip(r, width)) + " |")
    if i == 0:
        print("|" + "|".join("-" * (w + 2) for w in width) + "|")
EOF
