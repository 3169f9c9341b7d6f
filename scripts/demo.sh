#!/usr/bin/env bash
# The main job: install everything, then run the engine benchmark
# (bdevperf on null, malloc and io_uring bdevs, fio side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec .venv/bin/python bench/bdevperf.py --time "${BENCH_SECONDS:-3}" --repeat "${BENCH_REPEAT:-1}" --size-mb 256
