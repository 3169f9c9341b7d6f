#!/usr/bin/env bash
# Install what spdk-backend needs on a fresh Debian 12 host (run as root):
# system packages, then the project and its Python dependencies into .venv.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  build-essential pkg-config liburing-dev libvirt-dev python3-venv python3-dev
  qemu-system-x86 qemu-utils qemu-block-extra libvirt-daemon-system libvirt-clients
  linux-image-cloud-amd64 busybox-static cpio kmod xz-utils fio util-linux procps
  e2fsprogs xfsprogs shellcheck clang libclang-rt-14-dev
  ceph-mon ceph-mgr ceph-osd ceph-common librbd-dev librados-dev python3-rbd python3-rados
)

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
echo "== installing spdk-backend (builds the native engine)"
.venv/bin/python -m pip install -q -e '.[test,openstack]'
echo "== building native tools and C tests"
make -C native -j"$(nproc)" ${CI:+WERROR=1} >/dev/null
