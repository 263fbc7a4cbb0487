#!/usr/bin/env bash
# Installs everything (scripts/install.sh), runs the whole test suite, then the core, one
# agent plugin (dialogue) and one sink (jsonl) each in its own tox environment, holding only
# that package and what it declares: a test that needs an undeclared package fails there.
# Extra arguments go to the full pytest run; MATRIX_SKIP_TOX=1 skips the tox part.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh
status=0
"$PY" -m pytest -q "$@" || status=$?
if [ "${MATRIX_SKIP_TOX:-0}" != 1 ]; then
    "$PY" -m pip install --disable-pip-version-check -q "tox>=4"
    # tox envs are kept in .tox/ and reused: only the first run pays for their installs.
    env -u PYTHONPATH "$PY" -m tox -e core,jsonl,dialogue || status=$?
fi
exit $status
