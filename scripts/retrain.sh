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
# Two venvs. .venv-dvc holds only dvc and the remote's plugin, installed from scripts/dvc-requirements.txt
# with `pip install --require-hashes` before the project's own install: pull, push and exp-push, the steps
# that hold the remote's keys, run dvc from it and nothing of .venv. .venv (make install) runs everything
# else: reproduce (the stages, with the tracking server's credentials) and the report. Each step unsets
# the secrets it does not use, so the one-process run (no MODE, `make retrain`) splits them as CI does.
#
# Environment, all optional:
#   RETRAIN_EXP_NAME     the name of the DVC experiment that overrides make (`dvc exp run -n`; letters,
#                        digits and _.- only); exp-push needs it
#   RETRAIN_OVERRIDES    params overrides, space-separated key=value ("train.kimg=400 train.lr=0.0001"), on
#                        one line: reproduce with `dvc exp run -S key=value ...` instead of `dvc repro`. Every
#                        key must be a setting of params.yaml, every value a plain number, boolean, null or
#                        word of ASCII letters, digits and _.+- (not starting with `.` unless a number, no
#                        `..`); each word is passed as one argument, nothing of it is evaluated by the shell.
#   RETRAIN_BASE         git revision the report compares with (default HEAD, the last commit)
#   RETRAIN_FORCE        true = rerun every stage and train from step 0 (the weekly scheduled run)
#   RETRAIN_SETUP        false = skip the installs, .venv-dvc and `make install` (an environment that is
#                        already set up); otherwise set-up (re)builds .venv-dvc when the lock files changed
#   RETRAIN_REPORT       the markdown report (default results/retrain/report.md)
#   RETRAIN_GRID_URL     where readers can get the sample grid (CI: the uploaded artifact)
#   MLFLOW_TRACKING_URI  the tracking server (default: the project's sqlite:///mlflow.db); masked, with any
#                        user:password@ of a URL, in results/retrain/repro.log (an uploaded artifact)
#   GITHUB_TOKEN         exp-push only: git credentials for the push, in .git/config for that command only
# Remote credentials come from the environment (CI secrets) or .dvc/config.local, never .dvc/config.
# Backticks in single-quoted printf formats below are markdown code spans, not command substitutions:
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."
dvc_venv=.venv-dvc
dvc_locks=(scripts/dvc-build-requirements.txt scripts/dvc-requirements.txt)  # in the order they install

mode="${1:-all}"
base="${RETRAIN_BASE:-HEAD}"
report="${RETRAIN_REPORT:-results/retrain/report.md}"
log="$(dirname "$report")/repro.log"

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# The secrets a step may see, by kind: remote (AWS_*: the S3 remote's keys and settings), tracking
# (MLFLOW_TRACKING_*: the server's URI and credentials), git (GITHUB_TOKEN). Each mode unsets the kinds it
# does not name before it runs anything, so no code of a step can read a secret meant for another.
keep_secrets() {
    local name keep=" $* "
    while IFS= read -r name; do
        case "$name" in
            AWS_*) [[ "$keep" == *" remote "* ]] || unset -v "$name" ;;
            MLFLOW_TRACKING_*) [[ "$keep" == *" tracking "* ]] || unset -v "$name" ;;
            GITHUB_TOKEN) [[ "$keep" == *" git "* ]] || unset -v "$name" ;;
        esac
    done < <(compgen -e)
}

# PATH less the project's venv (make puts it first) and any activated one: in the steps with the remote's
# keys nothing of .venv may run, not even a `git` or `python` that some dependency dropped into .venv/bin.
# -ef: the same directory under any spelling (a symlinked checkout, a relative entry).
path_without_project_venv() {
    local dir out="" dirs
    IFS=: read -r -a dirs <<< "$PATH"
    for dir in "${dirs[@]}"; do
        if [ -d .venv/bin ] && [ "$dir" -ef .venv/bin ]; then continue; fi
        if [ -n "${VIRTUAL_ENV:-}" ] && [ "$dir" -ef "$VIRTUAL_ENV/bin" ]; then continue; fi
        out="${out:+$out:}$dir"
    done
    printf '%s' "$out"
}

use_venv() {
    # dvc runs `python stages/...`: the project's venv must come first, as in `make run`
    if [ -x .venv/bin/dvc ]; then PATH="$PWD/.venv/bin:$PATH"; fi
    command -v dvc >/dev/null || die "dvc not found: run make install (or put the venv on PATH)"
}

# dvc from .venv-dvc, nothing of .venv on PATH
use_dvc_venv() {
    PATH="$PWD/$dvc_venv/bin:$(path_without_project_venv)"
    unset -v VIRTUAL_ENV PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE
    export PATH PYTHONNOUSERSITE=1
}

# dvc for the steps that talk to the remote (pull, push, exp-push): .venv-dvc's, keeping the secrets of the
# kinds named. Without .venv-dvc (set-up skipped, RETRAIN_SETUP=false) only a remote that takes no
# credentials, a plain directory, is served: by the project's dvc, with every secret unset.
use_remote_dvc() {
    if [ -x "$dvc_venv/bin/dvc" ]; then
        keep_secrets "$@"
        use_dvc_venv
        return
    fi
    [[ " $* " != *" git "* || -z "${GITHUB_TOKEN:-}" ]] \
        || die "GITHUB_TOKEN goes to the dvc of $dvc_venv only, which is not there: run scripts/retrain.sh setup"
    keep_secrets
    use_venv
    local name url
    while read -r name url _; do
        case "$url" in
            *://*) die "remote '$name' ($url) is reached only from $dvc_venv, which is not there: run" \
                       "scripts/retrain.sh setup (it builds it from ${dvc_locks[*]}, pinned by hash)" ;;
        esac
    done < <(dvc remote list)
}

# .venv-dvc from the hash-locked requirements: every file pip installs must have a sha256 listed there, so
# neither a new upload to PyPI nor a changed index or mirror can put other code in it. Built before the
# project's own install (set-up), from a PATH without .venv, and again whenever the lock files change.
build_dvc_venv() {
    if [ -x "$dvc_venv/bin/dvc" ] && cat "${dvc_locks[@]}" | cmp -s - "$dvc_venv/.retrain-lock"; then
        return
    fi
    say "dvc venv $dvc_venv from ${dvc_locks[*]} (pip --require-hashes)"
    rm -rf "$dvc_venv"
    PATH="$(path_without_project_venv)" python3 -m venv "$dvc_venv"
    printf '*\n' > "$dvc_venv/.gitignore"  # never committed, whatever the project's .gitignore says
    local pip=("$dvc_venv/bin/python" -m pip install --disable-pip-version-check --no-input -q
               --require-hashes)
    # setuptools first: antlr4-python3-runtime (hydra-core's, so dvc's) is an sdist only, and pip's build
    # isolation would fetch its build backend unpinned; --no-build-isolation builds it with this one instead
    "${pip[@]}" --no-deps -r "${dvc_locks[0]}"
    "${pip[@]}" --no-build-isolation --use-pep517 -r "${dvc_locks[1]}"
    cat "${dvc_locks[@]}" > "$dvc_venv/.retrain-lock"  # what it was built from
}

has_remote() { [ -n "$(dvc remote list)" ]; }

# The plugin for a remote's storage type, by its URL (dvc alone speaks only to local and HTTP remotes), at
# an exact version: its code runs with the remote's credentials, so it comes from the hash lock
# scripts/dvc-requirements.txt with dvc (these versions accept dvc 3.67; move them with dvc). That file
# locks dvc-s3 only: another type's plugin must be added there first (see its header).
remote_plugin() {
    case "$1" in
        s3://*) echo dvc-s3==3.3.0 ;; gs://*) echo dvc-gs==3.1.0 ;; azure://*) echo dvc-azure==3.1.1 ;;
        ssh://*) echo dvc-ssh==4.3.0 ;; webdav://* | webdavs://*) echo dvc-webdav==3.0.1 ;; *) echo "" ;;
    esac
}

# .venv-dvc, then make install: everything that installs code, run before any secret is needed
setup() {
    if [ "${RETRAIN_SETUP:-true}" != false ]; then
        build_dvc_venv
        say "set-up (make install)"
        make install
    fi
    if [ -x "$dvc_venv/bin/dvc" ]; then ( use_dvc_venv; check_remote_plugin ); fi
    use_venv
}

# The plugin of every configured remote (pull and push may use any, with -r) must be in .venv-dvc, at the
# version of remote_plugin: installed from the lock, never on the fly.
check_remote_plugin() {
    local name url plugin have
    while read -r name url _; do
        plugin="$(remote_plugin "$url")"
        [ -n "$plugin" ] || continue
        have="$("$dvc_venv/bin/python" -c \
            'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "${plugin%%==*}" \
            2>/dev/null || true)"
        [ "$have" = "${plugin##*==}" ] \
            || die "remote '$name' ($url) needs $plugin, which $dvc_venv lacks (it has '${have:-none}'):" \
                   "add it to ${dvc_locks[1]} with its hashes (see the file's header), then run set-up again"
    done < <(dvc remote list)
}

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
# settings: `FILE:key=...` rewrites any YAML, TOML, JSON or Python file
# (src/ganforge/tasks/generation.py:X=...), and values go through Hydra and OmegaConf
# (${oc.env:AWS_SECRET_ACCESS_KEY} would write a secret into params.yaml). So a key is dotted names only
# and must be a setting that params.yaml already has, and a value is a plain number, boolean, null or word;
# anything else stops the script (exit 2) before any work.
# The classes are ASCII whatever the caller's locale (LC_ALL=C: under en_US.UTF-8 [A-Za-z0-9] also matches
# é and full-width digits), and a control character refuses the whole string: `read` stops at a newline,
# which would drop every word after it without a word of warning.
# A value that holds `..` or starts with `.` (other than a number such as .0001) is refused too: as a path
# (download.folder.path, evaluate.inception_weights) it would leave the project or name a hidden folder
# (.git, .venv, .dvc); a value has no `/`, so within the project it is a plain relative name.
words=() overrides=()
parse_overrides() {
    local LC_ALL=C w value raw="${RETRAIN_OVERRIDES:-}"
    [[ "$raw" != *[[:cntrl:]]* ]] \
        || die "RETRAIN_OVERRIDES holds a control character (a newline, tab, carriage return, escape, ...):" \
               "give the overrides on one line, separated by spaces"
    read -r -a words <<< "$raw"
    for w in "${words[@]}"; do
        [[ "$w" =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=[A-Za-z0-9_.+-]+$ ]] \
            || die "override '$w' is not setting=value (e.g. train.kimg=400: a dotted key of params.yaml, a" \
                   "number, true/false, null or a word of ASCII letters, digits and _.+-); separate several" \
                   "with spaces"
        value="${w#*=}"
        if [[ "$value" == *..* ]] \
            || { [[ "$value" == .* ]] && ! [[ "$value" =~ ^\.[0-9]+([eE][+-]?[0-9]+)?$ ]]; }; then
            die "override '$w': a value may not hold '..' nor start with '.' (unless a number such as .5):" \
                "as a path it would leave the project or name a hidden folder"
        fi
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
    # each word as dvc will get it, so that a reader of the log sees exactly what was checked and run
    say "overrides, checked (${#words[@]}): ${words[*]}"
}

# RETRAIN_EXP_NAME -> exp_name, checked like the overrides: it becomes a git ref and a dvc argument
exp_name=""
parse_exp_name() {
    local LC_ALL=C  # ASCII classes, as for the overrides
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
        dvc exp run "${args[@]}" 2>&1 | redact | tee "$log"
    else
        say "dvc repro ${args[*]}"
        dvc repro "${args[@]}" 2>&1 | redact | tee "$log"
    fi
}

# The stages' output with the secrets of this environment masked, for the log that CI uploads as an
# artifact (GitHub masks secrets in its own log, not in uploaded files): the values of the variables below
# (4 characters or more), then the user:password@ of any URL. Line by line, flushed, so the log keeps pace.
redact() {
    awk 'BEGIN {
        n = split("MLFLOW_TRACKING_URI MLFLOW_TRACKING_PASSWORD MLFLOW_TRACKING_TOKEN " \
                  "AWS_SECRET_ACCESS_KEY AWS_ACCESS_KEY_ID AWS_SESSION_TOKEN GITHUB_TOKEN", names, " ")
        for (i = 1; i <= n; i++) if (length(ENVIRON[names[i]]) >= 4) secret[++k] = ENVIRON[names[i]]
    }
    {
        line = $0
        for (i = 1; i <= k; i++) {
            out = ""
            while ((p = index(line, secret[i])) > 0) {
                out = out substr(line, 1, p - 1) "***"
                line = substr(line, p + length(secret[i]))
            }
            line = out line
        }
        gsub(/:\/\/[^\/@ \t]+@/, "://***@", line)
        print line
        fflush()
    }'
}

# One experiment of a sweep to the team: its git ref (refs/exps/...) to origin, which needs git push rights,
# and the outputs it cached to the DVC remote, so that anyone can `dvc exp pull origin NAME` / `dvc exp apply`.
# With GITHUB_TOKEN (the sweep's push step) the token goes into .git/config as actions/checkout would
# persist it, for this push only: the trap takes it out again on any exit, a failed push (set -e) included,
# so the steps after this one (the report, with the project's code) never find it.
exp_push() {
    [ -n "$exp_name" ] || die "exp-push needs RETRAIN_EXP_NAME (the experiment to push)"
    if [ -n "${GITHUB_TOKEN:-}" ]; then
        trap forget_git_token EXIT
        forget_git_token
        git config --local http.https://github.com/.extraheader \
            "AUTHORIZATION: basic $(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')"
    fi
    say "dvc exp push origin $exp_name"
    if has_remote; then dvc exp push origin "$exp_name"; else dvc exp push --no-cache origin "$exp_name"; fi
}

forget_git_token() { git config --local --unset-all http.https://github.com/.extraheader || true; }

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

# Overrides are checked wherever they will be used, before anything else is done with them. Each step keeps
# the secrets it uses and unsets the rest; `all` runs each in a subshell, so that holds there too.
step() {
    case "$1" in
        setup) keep_secrets; setup; check_override_keys ;;
        pull) use_remote_dvc remote; pull ;;
        reproduce) keep_secrets tracking; use_venv; check_override_keys; reproduce ;;
        push) use_remote_dvc remote; push ;;
        exp-push) use_remote_dvc remote git; exp_push ;;
        report) keep_secrets; use_venv; write_report ;;
    esac
}
case "$mode" in
    all)
        parse_overrides; parse_exp_name
        for s in setup pull reproduce push report; do ( step "$s" ); done ;;
    setup | reproduce) parse_overrides; parse_exp_name; step "$mode" ;;
    exp-push) parse_exp_name; step "$mode" ;;
    pull | push | report) step "$mode" ;;
    *) die "usage: scripts/retrain.sh [all|setup|pull|reproduce|push|exp-push|report]" ;;
esac
