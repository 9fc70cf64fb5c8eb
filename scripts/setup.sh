#!/usr/bin/env bash
# Create .venv and install nnp into it (pinned CPU stack; CMake builds pair_nnp and the evaluator).
# Idempotent: re-running only reinstalls nnp. Set PYTHON to choose the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-cpu.txt
# --no-build-isolation: pair_nnp must be compiled against the torch that will run it (see README)
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation -e .
