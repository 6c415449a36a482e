#!/usr/bin/env bash
# Set up (idempotent) and run the test suite on the CPU. GPU tests skip without CUDA; run them on a
# GPU machine with: scripts/test.sh -m gpu
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
