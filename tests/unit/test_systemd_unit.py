"""etc/systemd/spdk-backend-agent.service: valid for systemd, and set up
for restarts that guests never notice (docs/agent.md, "Upgrades and
restarts").

``systemd-analyze verify`` checks the unit with systemd's own parser (it
works without systemd as PID 1); the settings the agent's restart paths
rely on are checked by name.
"""

import configparser
import pathlib
import shutil
import subprocess

import pytest

UNIT = pathlib.Path(__file__).resolve().parents[2] / "etc/systemd/spdk-backend-agent.service"


def _service():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser["Service"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path):
    # verify wants ExecStart's program to exist: the agent is not installed here.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/bin/spdk-backend-agent", "/bin/true"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Unknown keys and bad values are only warnings: there must be none about
    # this unit.  verify also loads the units it names (Before=libvirtd.service),
    # and warns about theirs: libvirt 11's libvirtd.service has
    # Type=notify-reload, which Debian 12's systemd 252 does not know.
    others = tuple("/%s/" % d for d in ("lib/systemd/system", "usr/lib/systemd/system",
                                        "etc/systemd/system", "run/systemd/system"))
    ours = [line for line in (proc.stderr + proc.stdout).splitlines()
            if line.strip() and not line.startswith(others)]
    assert ours == [], proc.stderr + proc.stdout


def test_the_unit_keeps_guests_across_restarts():
    svc = _service()
    assert svc["Type"] == "notify"              # READY=1 / RELOADING=1 (agent/sdnotify.py)
    assert svc["NotifyAccess"] == "main"        # the engine's threads notify as the main pid
    assert int(svc["FileDescriptorStoreMax"]) >= 1024   # vhost_fdstore.c
    assert svc["Restart"] == "on-failure"       # a crash restarts it, with its fd store
    assert "kill -HUP $MAINPID" in svc["ExecReload"]    # reload = upgrade in place
