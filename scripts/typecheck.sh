#!/usr/bin/env bash
# Set up (idempotent) and type-check the package and the tests with mypy (configuration: pyproject.toml
# [tool.mypy]; scripts/typecheck.py explains why not plain `mypy`). Extra arguments go to mypy.
# Cold (no .mypy_cache) it takes about a minute on 2 cores (measured 59 s); a repeat about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/typecheck.py "$@"
