"""etc/systemd/spdk-backend-agent.service: valid for systemd, and set up
for restarts that guests never notice (docs/agent.md, "Upgrades and
restarts").

``systemd-analyze verify`` checks the unit with systemd's own parser (it
works without systemd as PID 1); the settings the agent's restart paths
rely on are checked by name, and so is the program it runs: where the
documented install (docs/openstack.md, "Install") puts the
``spdk-backend-agent`` script.
"""

import configparser
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNIT = ROOT / "etc/systemd/spdk-backend-agent.service"
INSTALL_DOC = ROOT / "docs/openstack.md"


def _unit():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser


def _service():
    return _unit()["Service"]


def _exec_start():
    return shlex.split(_service()["ExecStart"])


def _install_commands():
    """The shell lines of the "Install" section's first ``sh`` block."""
    text = INSTALL_DOC.read_text()
    section = text[text.index("\n## Install\n"):]
    section = section[:section.index("\n## ", 1)]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def _console_scripts():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.replace(" ", "").split("=", 1) for line in lines)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path):
    # verify wants ExecStart's program to exist: the agent is not installed here.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(_exec_start()[0] + " ", "/bin/true "))
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


def test_the_unit_waits_for_the_network():
    # Ceph RBD volumes are replayed at start: the network must be up.
    unit = _unit()["Unit"]
    assert "network-online.target" in unit["After"].split()
    assert "network-online.target" in unit["Wants"].split()


def test_the_unit_runs_the_agent_the_documented_install_puts_there():
    """The install commands make a virtualenv and pip-install the project
    into it: the unit's ExecStart must be that venv's console script."""
    assert _console_scripts()["spdk-backend-agent"] == "spdk_backend.agent.main:main"
    commands = _install_commands()
    venvs = [shlex.split(c)[-1] for c in commands if re.match(r"python3 -m venv \S+$", c)]
    assert len(venvs) == 1, commands
    venv = venvs[0]
    assert any(c.startswith(venv + "/bin/pip install ") for c in commands), commands
    # Where pip puts a venv's console scripts (the "venv" install scheme).
    scripts = sysconfig.get_path("scripts", "venv", vars={"base": venv, "platbase": venv})
    program = _exec_start()[0]
    assert program == scripts + "/spdk-backend-agent", (program, scripts)
    assert _exec_start()[1:] == ["--config-file", "/etc/spdk-backend/agent.conf"]
    # The same layout, for real, in the virtualenv running these tests (into
    # which scripts/install-deps.sh pip-installed the project).
    if sys.prefix != sys.base_prefix:
        here = pathlib.Path(sysconfig.get_path("scripts", "venv",
                                               vars={"base": sys.prefix,
                                                     "platbase": sys.prefix}))
        assert (here / "spdk-backend-agent").is_file()
        assert pathlib.Path(program).relative_to(venv) == \
            (here / "spdk-backend-agent").relative_to(sys.prefix)


def test_the_install_installs_the_unit_it_checks():
    commands = _install_commands()
    assert "install -D -m 0644 etc/systemd/spdk-backend-agent.service " \
           "/etc/systemd/system/" in commands, commands
