#!/usr/bin/env bash
# The tests whose outcome depends on the QEMU and libvirt versions: every
# one that runs QEMU, qemu-storage-daemon or libvirtd.  The engine against our
# own initiator, or the agent alone, does not depend on them: those run once.
# .ci/run runs these on each supported stack; by hand:
#   SB_STACK=debian12 scripts/run-tests.sh $(scripts/stack-tests.sh)
# The Nova ones (tests/functional/openstack/nova_e2e, nova_migration) import
# nova and are collected only in the nova group's own process: .ci/run runs
# them with SPDK_BACKEND_OPENSTACK_GROUP=nova (docs/support.md).
set -euo pipefail
cd "$(dirname "$0")/.."
printf '%s\n' \
  tests/e2e \
  tests/functional/test_vhost_initiator_qsd.py \
  tests/functional/test_vhost_bench.py
