#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/setup.sh requirements-dev.txt
.venv/bin/ruff check xkcdcrawl tests benchmarks
.venv/bin/ruff format --check xkcdcrawl tests benchmarks
.venv/bin/mypy xkcdcrawl
.venv/bin/mypy tests
exec .venv/bin/python -m pytest -n 3 "$@"  # the crawls mostly wait: 3 at once on 2 cores
