#!/usr/bin/env bash
# Install PortLedger and its pinned dependencies into ./.venv (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "PortLedger needs Python >= 3.11 (set PYTHON=...)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# requirements.lock pins every transitive dependency to the versions the tests ran with.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[test]"
# The EVM opcode loop compiled with mypyc (node/native.py; needs a C compiler and Python's
# headers). Without them the nodes run the same source as Python, about half as fast.
# Built again only when node/evmloop.py changed since the last build (its stamp).
if ! .venv/bin/python -c 'import sys; from node.native import compiled_state; sys.exit(not compiled_state()[0])' 2>/dev/null; then
    .venv/bin/python -m node.native build --optional
fi
