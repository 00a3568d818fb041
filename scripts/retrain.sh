#!/usr/bin/env bash
# Retrain and report: what .github/workflows/retrain.yml runs on a GPU runner, and `make retrain` locally.
#
#   scripts/retrain.sh            set up, dvc pull (when a remote is configured), reproduce, dvc push, report
#   scripts/retrain.sh MODE       one step: setup, pull, reproduce, push or report. CI runs them as separate
#                                 steps so that each gets only the secrets it needs (see retrain.yml);
#                                 `report` also writes the report again once CI knows the grid's URL
#   scripts/retrain.sh exp-push   `dvc exp push origin $RETRAIN_EXP_NAME`: the experiment's git ref to the
#                                 git remote and its outputs to the DVC remote (a sweep job, sweep.yml)
#
# Environment, all optional:
#   RETRAIN_EXP_NAME     the name of the DVC experiment that overrides make (`dvc exp run -n`; letters,
#                        digits and _.- only); exp-push needs it
#   RETRAIN_OVERRIDES    params overrides, space-separated key=value ("train.kimg=400 train.lr=0.0001"):
#                        reproduce with `dvc exp run -S key=value ...` instead of `dvc repro`. Every key must
#                        be a setting of params.yaml, every value a plain number, boolean, null or word; each
#                        word is passed as one argument and nothing of it is evaluated by the shell.
#   RETRAIN_BASE         git revision the report compares with (default HEAD, the last commit)
#   RETRAIN_FORCE        true = rerun every stage and train from step 0 (the weekly scheduled run)
#   RETRAIN_SETUP        false = skip `make install` (an environment that is already set up)
#   RETRAIN_REPORT       the markdown report (default results/retrain/report.md)
#   RETRAIN_GRID_URL     where readers can get the sample grid (CI: the uploaded artifact)
#   MLFLOW_TRACKING_URI  the tracking server (default: the project's sqlite:///mlflow.db)
# Remote credentials come from the environment (CI secrets) or .dvc/config.local, never .dvc/config.
# Backticks in single-quoted printf formats below are markdown code spans, not command substitutions:
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-all}"
base="${RETRAIN_BASE:-HEAD}"
report="${RETRAIN_REPORT:-results/retrain/report.md}"
log="$(dirname "$report")/repro.log"

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

use_venv() {
    # dvc runs `python stages/...`: the project's venv must come first, as in `make run`
    if [ -x .venv/bin/dvc ]; then PATH="$PWD/.venv/bin:$PATH"; fi
    command -v dvc >/dev/null || die "dvc not found: run make install (or put the venv on PATH)"
}

has_remote() { [ -n "$(dvc remote list)" ]; }

# The plugin for the default remote's storage type (dvc alone speaks only to local and HTTP remotes), at an
# exact version: its code runs with the remote's credentials, so a new upload to PyPI must not change it
# under us (these versions accept dvc 3.67; move them with dvc).
remote_plugin() {
    local url
    url="$(dvc remote list | awk 'NR == 1 {print $2}')"
    case "$url" in
        s3://*) echo dvc-s3==3.3.0 ;; gs://*) echo dvc-gs==3.1.0 ;; azure://*) echo dvc-azure==3.1.1 ;;
        ssh://*) echo dvc-ssh==4.3.0 ;; webdav://* | webdavs://*) echo dvc-webdav==3.0.1 ;; *) echo "" ;;
    esac
}

# make install, and the remote's plugin: everything that installs code, run before any secret is needed
setup() {
    if [ "${RETRAIN_SETUP:-true}" != false ]; then
        say "set-up (make install)"
        make install
    fi
    use_venv
    local plugin
    if has_remote; then plugin="$(remote_plugin)"; else plugin=""; fi
    if [ -n "$plugin" ] && [ "$(pip_version "${plugin%%==*}")" != "${plugin##*==}" ]; then
        say "installing $plugin for the remote"
        python -m pip install --disable-pip-version-check -q "$plugin"
    fi
}

pip_version() { python -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null; }

pull() {
    if ! has_remote; then
        say "no DVC remote configured: skipping dvc pull (everything is built here)"
        return
    fi
    say "dvc pull (outputs of the committed dvc.lock, and the run cache)"
    # --allow-missing: outputs the remote lacks yet are simply reproduced below
    dvc pull --run-cache --allow-missing
}

# RETRAIN_OVERRIDES -> overrides=(-S key=value ...). `dvc exp run -S` accepts far more than params.yaml
# settings: `FILE:key=...` rewrites any YAML, TOML, JSON or Python file (src/ganforge/src/ganforge/tasks/generation.py:X=...),
# and values go through Hydra and OmegaConf (${oc.env:AWS_SECRET_ACCESS_KEY} would write a secret into
# params.yaml). So a key is dotted names only and must be a setting that params.yaml already has, and a
# value is a plain number, boolean, null or word; anything else stops the script (exit 2) before any work.
words=() overrides=()
parse_overrides() {
    local w
    read -r -a words <<< "${RETRAIN_OVERRIDES:-}"
    for w in "${words[@]}"; do
        [[ "$w" =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=[A-Za-z0-9_.+-]+$ ]] \
            || die "override '$w' is not setting=value (e.g. train.kimg=400: a dotted key of params.yaml, a" \
                   "number, true/false, null or a word of letters, digits and _.+-); separate several with spaces"
        overrides+=(-S "$w")
    done
}

# Each key must name a setting (not a section) of params.yaml, which -S would otherwise add or replace.
# Python reads the YAML, so this runs once the venv is there (after set-up).
check_override_keys() {
    [ "${#words[@]}" -gt 0 ] || return 0
    local unknown
    unknown="$(python - "${words[@]}" <<'PY'
import sys
import yaml

with open("params.yaml") as f:
    params = yaml.safe_load(f)
for word in sys.argv[1:]:
    node = params
    for name in word.partition("=")[0].split("."):
        node = node.get(name, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):  # missing, or a whole section
        print(word)
        break
PY
)" || die "cannot read params.yaml to check the overrides (python with pyyaml on PATH?)"
    [ -z "$unknown" ] || die "override '$unknown': params.yaml has no setting ${unknown%%=*}"
}

# RETRAIN_EXP_NAME -> exp_name, checked like the overrides: it becomes a git ref and a dvc argument
exp_name=""
parse_exp_name() {
    exp_name="${RETRAIN_EXP_NAME:-}"
    [ -z "$exp_name" ] || [[ "$exp_name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$ ]] \
        || die "RETRAIN_EXP_NAME '$exp_name' is not a name of letters, digits and _.- (at most 100)"
}

reproduce() {
    local args=()
    if [ -n "$exp_name" ]; then
        [ "${#overrides[@]}" -gt 0 ] || die "RETRAIN_EXP_NAME needs RETRAIN_OVERRIDES (an experiment)"
        args=(-n "$exp_name")
    fi
    if [ "${RETRAIN_FORCE:-false}" = true ]; then
        # From scratch: --force reruns every stage, but train would resume its persisted checkpoint (already
        # at the last step) and train nothing. train.resume=never is a params setting, so it goes through
        # `dvc exp run -S` like any override: it is recorded in params.yaml, dvc.lock and the report's params
        # diff, where a flag outside params (an environment variable, deleting checkpoints/) would leave no
        # trace. It comes last, so it wins over a resume given in RETRAIN_OVERRIDES.
        overrides+=(-S train.resume=never)
        args+=(--force)
    fi
    args+=("${overrides[@]}")
    mkdir -p "$(dirname "$log")"
    if [ "${#overrides[@]}" -gt 0 ]; then
        say "dvc exp run ${args[*]}"
        dvc exp run "${args[@]}" 2>&1 | tee "$log"
    else
        say "dvc repro ${args[*]}"
        dvc repro "${args[@]}" 2>&1 | tee "$log"
    fi
}

# One experiment of a sweep to the team: its git ref (refs/exps/...) to origin, which needs git push rights,
# and the outputs it cached to the DVC remote, so that anyone can `dvc exp pull origin NAME` / `dvc exp apply`.
exp_push() {
    [ -n "$exp_name" ] || die "exp-push needs RETRAIN_EXP_NAME (the experiment to push)"
    say "dvc exp push origin $exp_name"
    if has_remote; then dvc exp push origin "$exp_name"; else dvc exp push --no-cache origin "$exp_name"; fi
}

push() {
    if has_remote; then
        say "dvc push (outputs and the run cache, so the next retrain can skip what is unchanged)"
        dvc push --run-cache
    fi
}

# A section of the report: the markdown table of a dvc diff, or a line saying there is none.
diff_section() {
    local title="$1" none="$2" out err
    shift 2
    printf '### %s\n\n' "$title"
    err="$(mktemp)"
    if out="$(dvc "$@" 2>"$err")"; then
        # with --md dvc prints the table header even when nothing differs: rows start after line 2
        if [ "$(printf '%s\n' "$out" | grep -c '^|')" -gt 2 ]; then
            printf '%s\n\n' "$out"
        else
            printf '%s\n\n' "$none"
        fi
    else
        printf '`dvc %s` failed: %s\n\n' "$*" "$(head -n 3 "$err" | tr '\n' ' ')"
    fi
    rm -f "$err"
}

write_report() {
    local ran grid run_id report_dir
    report_dir="$(dirname "$report")"
    mkdir -p "$report_dir"
    ran="none: every stage was up to date or restored from the cache"
    if [ -s "$log" ] && grep -q "^Running stage" "$log"; then
        ran="$(sed -n "s/^Running stage '\(.*\)':.*/\1/p" "$log" | paste -sd, - | sed 's/,/, /g')"
    fi
    run_id="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' \
        results/train/run.json 2>/dev/null || echo unknown)"
    {
        printf '## Retrain report\n\n'
        printf 'Commit `%s` compared with `%s`.' "$(git rev-parse --short HEAD)" "$base"
        if [ -n "${RETRAIN_OVERRIDES:-}" ]; then printf ' Overrides: `%s`.' "$RETRAIN_OVERRIDES"; fi
        printf '\n\nStages run: %s.\n\nMLflow run: `%s`.\n\n' "$ran" "$run_id"
        diff_section "Metrics" "No metric changed." metrics diff "$base" --md
        diff_section "Params" "No param changed." params diff "$base" --md
        printf '### Samples\n\n'
        grid=samples/grid.png
        if [ -n "${RETRAIN_GRID_URL:-}" ]; then
            printf '[`%s`](%s) (in the run'"'"'s artifact `retrain-report`; also in the MLflow run)\n' \
                "$grid" "$RETRAIN_GRID_URL"
        elif [ -f "$grid" ]; then
            # a path relative to the report, so the image shows in any local markdown viewer
            printf '![sample grid](%s)\n' "$(python -c 'import os,sys; print(os.path.relpath(*sys.argv[1:]))' \
                "$grid" "$report_dir")"
        else
            printf 'No sample grid (the pipeline did not get that far).\n'
        fi
    } > "$report"
    say "report: $report"
    cat "$report"
}

# Overrides are checked wherever they will be used, before anything else is done with them.
case "$mode" in
    all) parse_overrides; parse_exp_name; setup; check_override_keys; pull; reproduce; push; write_report ;;
    setup) parse_overrides; parse_exp_name; setup; check_override_keys ;;
    pull) use_venv; pull ;;
    reproduce) parse_overrides; parse_exp_name; use_venv; check_override_keys; reproduce ;;
    push) use_venv; push ;;
    exp-push) parse_exp_name; use_venv; exp_push ;;
    report) use_venv; write_report ;;
    *) die "usage: scripts/retrain.sh [all|setup|pull|reproduce|push|exp-push|report]" ;;
esac
