"""``--json`` after the command's name (``status --json``, ``rpc ... --json``,
``upgrade --json``) against a real agent process (real engine): the same
output as the global ``--json``; and nothing on stderr when it is not a
terminal (the progress of waits is for terminals only).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from spdk_backend.cmd import cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cmd(agent, capsys, monkeypatch):
    """Run the CLI in-process against ``agent``; returns (rc, stdout, stderr)."""
    # libvirt's test driver: status's stack section without a libvirtd.
    monkeypatch.setenv("SPDK_BACKEND_LIBVIRT_URI", "test:///default")

    def run(*argv):
        rc = cli.main(["--rpc-socket", agent.rpc_socket] + list(argv))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def test_rpc_json_after_the_command(cmd):
    rc, out, err = cmd("rpc", "bdev_malloc_create", "name=m0", "num_blocks=2048",
                       "block_size=512", "--json")
    assert rc == 0 and out == '"m0"\n' and err == ""
    rc, out, _ = cmd("rpc", "bdev_malloc_create", "name=m1", "num_blocks=2048",
                     "block_size=512")
    assert rc == 0 and out == "m1\n"                 # without --json: as it is
    for words in (["rpc", "bdev_get_bdevs"], ["rpc", "bdev_get_bdevs", "name=m0"],
                  ["rpc", "bdev_get_bdevs", '{"name": "m1"}'],
                  ["rpc", "spdk_get_version"]):
        rc, after, err = cmd(*(words + ["--json"]))
        assert rc == 0 and err == "", err
        rc, before, err = cmd(*(["--json"] + words))
        assert rc == 0 and err == "", err
        assert after == before
    rc, out, _ = cmd("rpc", "bdev_get_bdevs", "name=m0", "--json")
    assert [b["name"] for b in json.loads(out)] == ["m0"]


def _shape(text):
    """A status without what changes between two runs (rates, load)."""
    status = json.loads(text)
    for r in status["reactors"]:
        r.pop("busy_pct")
    for row in status["bdevs"] + status["controllers"]:
        row.pop("iops")
    return status


def test_status_json_after_the_command(cmd):
    assert cmd("rpc", "bdev_malloc_create", "name=m0", "num_blocks=2048",
               "block_size=512")[0] == 0
    assert cmd("rpc", "vhost_create_blk_controller", "ctrlr=c0", "dev_name=m0")[0] == 0
    rc, after, err = cmd("status", "--interval", "0.2", "--json")
    assert rc == 0 and err == "", err
    rc, before, err = cmd("--json", "status", "--interval", "0.2")
    assert rc == 0 and err == "", err
    assert _shape(after) == _shape(before)
    status = json.loads(after)
    assert status["interval"] == 0.2
    assert [b["name"] for b in status["bdevs"]] == ["m0"]
    assert [c["ctrlr"] for c in status["controllers"]] == ["c0"]
    assert status["stack"]["uri"] == "test:///default"
    rc, table, _ = cmd("status", "--interval", "0")
    assert rc == 0 and "Reactors" in table and not table.lstrip().startswith("{")


def test_upgrade_json_after_the_command(cmd, agent):
    with agent.client() as c:
        before = c.call("framework_get_process")
    rc, out, err = cmd("upgrade", "--json")
    assert rc == 0, err
    assert err == ""
    after = agent.wait_upgraded(before["started_at"])
    got = json.loads(out)
    assert got["pid"] == after["pid"] != before["pid"]
    assert got["sessions"] == got["adopted"] == got["not_adopted"] == []


def test_installed_script_json_after_the_command(agent, base_dir):
    """The entry point, its stderr a pipe: JSON on stdout, nothing on stderr."""
    exe = shutil.which("spdk-backend") or None
    argv = [exe] if exe else [sys.executable, "-m", "spdk_backend.cmd.cli"]
    for words in (["status", "--json", "--interval", "1.5"],
                  ["rpc", "spdk_get_version", "--json"]):
        proc = subprocess.run(argv + ["--rpc-socket", agent.rpc_socket] + words,
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ,
                                       SPDK_BACKEND_LIBVIRT_URI="test:///default"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        json.loads(proc.stdout)
