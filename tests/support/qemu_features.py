"""What a real QEMU's vhost-user-blk negotiated with our target, per QEMU
version: tests/data/qemu_vhost_features.json.

tests/e2e/test_vhost_guest.py records it from a booted guest and asserts it
still matches; native/Makefile embeds the same file in vhost_initiator
(``--like-qemu VERSION``), so the benchmark profile cannot drift from what a
real QEMU does.
"""

import json
import os
import re
import subprocess

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "data", "qemu_vhost_features.json")
# Set to re-record the running QEMU's entry instead of comparing with it.
RECORD_ENV = "SB_RECORD_QEMU_FEATURES"


def qemu_version(binary="qemu-system-x86_64"):
    """(major.minor, the full --version line) of a QEMU binary."""
    line = subprocess.run([binary, "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]
    m = re.search(r"version (\d+)\.(\d+)", line)
    if m is None:
        raise ValueError("no version in %r" % line)
    return "%s.%s" % m.groups(), line


def load(path=PATH):
    with open(path) as f:
        return json.load(f)["qemu"]


def save(version, entry, path=PATH):
    """Write `entry` for `version`, keeping the others; one key per line so
    native/Makefile can read it without a JSON parser."""
    data = {"qemu": {}}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data["qemu"][version] = entry
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
