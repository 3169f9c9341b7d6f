#!/usr/bin/env bash
# Start the system services the tests and the demo need (no systemd needed).
set -euo pipefail
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
