#!/usr/bin/env bash
# Create .venv and install the pinned requirements: bash scripts/setup.sh [requirements file]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "${1:-requirements.txt}" -c constraints.txt
