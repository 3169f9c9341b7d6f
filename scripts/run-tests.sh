#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts libvirtd, runs the
# C unit tests and every pytest test (unit, functional, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/start-services.sh
# The console scripts (spdk-backend-agent, spdk-backend, spdk-rpc) of this checkout.
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest tests "$@"
