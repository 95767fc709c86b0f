#!/usr/bin/env bash
# Set up (a venv in .venv, CPU torch) and run the whole test suite: the fast lane first
# (pyproject's default marker expression), then the slow and SLURM lanes.
# Usage: bash tests/run_all.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
pip install -q --disable-pip-version-check -r requirements-cpu.txt
pip install -q --disable-pip-version-check --no-deps -e .
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m pytest -ra "$@"
python -m pytest -ra --durations=20 -m "slow or slurm" "$@"
