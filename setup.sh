#!/usr/bin/env bash
# One-step setup of a virtual environment in .venv with Refinery and its test tools.
# torch is installed first and pinned so pip does not pull a multi-GB CUDA build on CPU machines;
# on a GPU machine, install the torch build you want before running this. Everything else is
# installed at the versions constraints.txt pins (the Docker image's, so a driver matches the
# cluster's Ray); CONSTRAINTS= (empty) installs without them, e.g. on a Python other than 3.11.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
CONSTRAINTS=${CONSTRAINTS-constraints.txt}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[test]"
