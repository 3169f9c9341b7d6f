#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts libvirtd, runs the
# C unit tests and every pytest test (unit, functional, end-to-end).
# Arguments go to pytest; paths among them run only those tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/start-services.sh
# The console scripts (spdk-backend-agent, spdk-backend, spdk-rpc) of this checkout.
export PATH="$PWD/.venv/bin:$PATH"
# Paths among the arguments replace the default "tests"; options pass on.
paths=()
for a in "$@"; do
  [[ "$a" != -* && -e "${a%%::*}" ]] && paths+=("$a")
done
if [ "${#paths[@]}" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest tests "$@"
