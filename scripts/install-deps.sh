#!/usr/bin/env bash
# Install what spdk-backend needs on a fresh Debian 12 or 13 host (run as
# root): system packages, then the project and its Python dependencies into
# .venv.  Idempotent: a second run installs nothing new.
#
# The virtualization stack (QEMU, libvirt) is chosen by SB_STACK:
#   SB_STACK=current  (default) Debian 13's QEMU 10.0 and libvirt 11.3: from
#                     the main suite on Debian 13, from bookworm-backports on
#                     Debian 12 (the suite is added to apt's sources).
#   SB_STACK=debian12 Debian 12's own QEMU 7.2 and libvirt 9.0 (Debian 12
#                     only); installed over the current stack by downgrading.
# Switching stacks rebuilds libvirt-python in .venv against the libvirt it
# now runs with; scripts/start-services.sh then restarts libvirtd.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=${SB_STACK:-current}
# shellcheck disable=SC1091
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

SYSTEM_PACKAGES=(
  build-essential pkg-config liburing-dev python3-venv python3-dev
  linux-image-cloud-amd64 busybox-static cpio kmod xz-utils fio util-linux procps
  e2fsprogs xfsprogs shellcheck clang libclang-rt-14-dev
  ceph-mon ceph-mgr ceph-osd ceph-common librbd-dev librados-dev python3-rbd python3-rados
  libsystemd-dev systemd
)
# The packages of the virtualization stack; libvirt-dev must match libvirt0.
STACK_PACKAGES=(
  qemu-system-x86 qemu-utils qemu-block-extra
  libvirt-daemon-system libvirt-clients libvirt-dev
)
PIN=/etc/apt/preferences.d/spdk-backend-stack
BACKPORTS=/etc/apt/sources.list.d/spdk-backend-backports.sources

export DEBIAN_FRONTEND=noninteractive
apt_updated=
sources_changed=
apt_update() { [ -n "$apt_updated" ] || apt-get update -q; apt_updated=1; }

# The mirror this host's apt already uses for the main suite.
main_mirror() {
  local uri
  uri=$(awk -v s="$CODENAME" '
      /^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==s) {print u; exit}}' \
      /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk -v s="$CODENAME" '$1=="deb" && $3==s {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "install-deps: no apt source for $CODENAME found" >&2; exit 1; }
  echo "$uri"
}

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }

stack_target=()
case "$STACK:$CODENAME" in
  current:trixie|current:forky|current:sid)
    rm -f "$PIN" ;;
  current:bookworm)
    rm -f "$PIN"
    if [ ! -f "$BACKPORTS" ]; then
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$(main_mirror)" > "$BACKPORTS"
      sources_changed=1
    fi
    stack_target=(-t bookworm-backports) ;;
  debian12:bookworm)
    # Priority over 1000 makes apt take bookworm's versions even where that
    # is a downgrade from backports; among the three suites at one priority
    # apt takes the highest version (security and stable updates).
    for suite in bookworm bookworm-updates bookworm-security; do
      printf 'Package: qemu-* libvirt-* libvirt0\nPin: release n=%s\nPin-Priority: 1001\n\n' "$suite"
    done > "$PIN" ;;
  debian12:*)
    echo "install-deps: SB_STACK=debian12 needs Debian 12 (this is ${CODENAME:-unknown})" >&2; exit 2 ;;
  *)
    echo "install-deps: unknown SB_STACK=$STACK (current or debian12) or release ${CODENAME:-unknown}" >&2; exit 2 ;;
esac

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing system packages: ${missing[*]}"
  apt_update
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The stack: install or switch when any package is not at the candidate
# version of the chosen suite.
want_stack() {
  local p cand
  for p in "${STACK_PACKAGES[@]}"; do
    cand=$(apt-cache policy "${stack_target[@]}" "$p" 2>/dev/null | sed -n 's/^  Candidate: //p')
    [ -n "$cand" ] && [ "$cand" != "(none)" ] || return 0
    [ "$(installed_version "$p")" = "$cand" ] || return 0
  done
  return 1
}
if [ -n "$sources_changed" ] || want_stack; then
  apt_update
fi
apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef
          -o Dpkg::Options::=--force-confold)
if want_stack; then
  echo "== installing the $STACK virtualization stack: ${STACK_PACKAGES[*]}"
  apt-get install "${apt_opts[@]}" --allow-downgrades "${stack_target[@]}" "${STACK_PACKAGES[@]}"
fi
# A downgrade loses files: a newer package that took files over from an older
# one (Replaces) takes them along when apt removes it (libvirt 11.3's
# libvirt-common and 9.0's libvirt0 with /usr/share/libvirt/cpu_map), and dpkg
# no longer lists them for anyone.  Unpack the stack's packages again, at the
# versions installed, whenever libvirt's CPU map is missing.
if [ ! -e /usr/share/libvirt/cpu_map/index.xml ]; then
  mapfile -t again < <(dpkg-query -W -f='${Package}=${Version} ${Status}\n' 'qemu*' 'libvirt*' |
                       awk '/ installed$/ {print $1}')
  echo "== reinstalling the stack's packages (files lost in a downgrade)"
  apt_update
  apt-get install "${apt_opts[@]}" --allow-downgrades --reinstall "${again[@]}"
fi
echo "== stack: QEMU $(installed_version qemu-system-x86), libvirt $(installed_version libvirt-daemon-system)"

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
echo "== installing spdk-backend (builds the native engine)"
# journal: systemd-python (built against libsystemd-dev), which oslo.log's
# use_journal sends with.
.venv/bin/python -m pip install -q -e '.[test,openstack,journal]'
# libvirt-python binds the symbols of the libvirt it was built against: a
# module built against 11.3 does not load with 9.0's libvirt0.
libvirt_now=$(pkg-config --modversion libvirt)
stamp=.venv/.libvirt-python-built-for
if [ "$(cat "$stamp" 2>/dev/null)" != "$libvirt_now" ]; then
  echo "== building libvirt-python against libvirt $libvirt_now"
  .venv/bin/python -m pip install -q --no-cache-dir --force-reinstall --no-deps --no-binary libvirt-python libvirt-python
  echo "$libvirt_now" > "$stamp"
fi
echo "== building native tools and C tests"
make -C native -j"$(nproc)" ${CI:+WERROR=1} >/dev/null
