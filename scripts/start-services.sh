#!/usr/bin/env bash
# Start the system services the tests and the demo need (no systemd needed).
# A daemon still running files that have since been replaced (an upgrade,
# or scripts/install-deps.sh switching the QEMU/libvirt stack) is restarted.
set -euo pipefail

# Whether the running $1 executes or maps a file that is no longer installed
# (its binary, or a library or driver module of the old version).
stale() {
  local pid exe
  pid=$(pgrep -xo "$1") || return 1
  exe=$(readlink "/proc/$pid/exe") || return 1
  [[ "$exe" == *" (deleted)" ]] || grep -q '\.so[.0-9]* (deleted)$' "/proc/$pid/maps"
}

for daemon in libvirtd virtlogd; do
  if stale "$daemon"; then
    echo "== restarting $daemon: files it runs were replaced"
    pkill -x "$daemon" || true
    for _ in $(seq 1 100); do
      pgrep -x "$daemon" >/dev/null || break
      sleep 0.1
    done
    pkill -9 -x "$daemon" 2>/dev/null || true
  fi
done

if ! pgrep -x virtlogd >/dev/null; then
  virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
  # libvirt finds hugetlbfs mounts when it starts; systemd mounts this one
  # on a normal Debian host.  Huge pages themselves are reserved by the
  # tests that use them.
  if ! grep -q '^[^ ]* /dev/hugepages hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs hugetlbfs /dev/hugepages || echo "warning: hugetlbfs not mounted" >&2
  fi
  libvirtd -d
fi
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "libvirtd did not come up" >&2
exit 1
