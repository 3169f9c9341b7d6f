#!/usr/bin/env bash
# The main job, on a fresh Debian 12 host as root, from a clone of this repo:
# install everything, start libvirtd and the agent, define a small test VM,
# create a volume, attach it live, and show what the guest sees and does
# with it (scripts/demo.py); then remove it all again.  --migrate also
# migrates the guest live to a second libvirtd and agent on this machine.
#
#   scripts/demo.sh [--keep | --migrate] [--no-install] [--dir DIR]
#   scripts/demo.sh --cleanup          # remove what a --keep run left
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
args=()
for a in "$@"; do
  case "$a" in
    --no-install) install=0 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$a") ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root (it installs packages, starts libvirtd and defines a VM)" >&2
  exit 2
fi
if [ "$install" = 1 ]; then
  scripts/install-deps.sh
fi
scripts/start-services.sh
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" scripts/demo.py ${args[@]+"${args[@]}"}
