"""``spdk-backend volume ...`` against a real agent process (real engine).

The CLI runs in-process (``cli.main``) so its output is easy to check; one
test runs the installed ``spdk-backend`` script to prove the entry point.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from spdk_backend.cmd import cli
from tests.support import agent_proc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cmd(agent, base_dir, capsys):
    """Run the CLI against ``agent``; returns (rc, stdout, stderr)."""
    voldir = os.path.join(base_dir, "volumes")

    def run(*argv, volume_dir=True):
        argv = list(argv)
        if volume_dir and argv[:2] == ["volume", "create"]:
            argv += ["--volume-dir", voldir]
        rc = cli.main(["--rpc-socket", agent.rpc_socket] + argv)
        out, err = capsys.readouterr()
        return rc, out, err

    run.volume_dir = voldir
    return run


def test_create_list_resize_delete_file_volume(cmd, agent):
    rc, out, err = cmd("volume", "create", "vol1", "--size", "64M")
    assert rc == 0, err
    path = os.path.join(cmd.volume_dir, "vol1")
    assert "Created file volume vol1 (64M) at %s" % path in out
    st = os.stat(path)
    assert st.st_size == 64 << 20
    assert st.st_blocks == 0                     # sparse

    rc, out, _ = cmd("volume", "list")
    assert rc == 0
    assert out.split("\n")[0].split() == ["NAME", "BACKEND", "SIZE", "CONTROLLERS", "PATH"]
    assert out.split("\n")[1].split() == ["vol1", "file", "64M", "-", path]

    with agent.client() as c:
        (bdev,) = c.call("bdev_get_bdevs", name="vol1")
    assert bdev["num_blocks"] * bdev["block_size"] == 64 << 20

    rc, out, _ = cmd("volume", "resize", "vol1", "--size", "96M")
    assert rc == 0 and "vol1: 64M -> 96M" in out
    assert os.stat(path).st_size == 96 << 20
    rc, out, _ = cmd("--json", "volume", "list")
    (vol,) = json.loads(out)
    assert vol == {"name": "vol1", "backend": "file", "size": 96 << 20, "path": path,
                   "controllers": []}

    rc, out, err = cmd("volume", "resize", "vol1", "--size", "32M")
    assert rc == 1 and "can only grow" in err

    rc, out, _ = cmd("volume", "delete", "vol1")
    assert rc == 0 and "Deleted volume vol1" in out
    assert not os.path.exists(path)
    rc, out, _ = cmd("volume", "list", "--json")
    assert json.loads(out) == []


def test_file_volume_survives_agent_restart(cmd, agent):
    assert cmd("volume", "create", "keep", "--size", "1M")[0] == 0
    agent.stop()
    agent.start()
    rc, out, _ = cmd("--json", "volume", "list")
    assert rc == 0
    assert [(v["name"], v["size"]) for v in json.loads(out)] == [("keep", 1 << 20)]


def test_shared_file_volume_may_be_served_by_a_second_agent(cmd, agent, base_dir):
    """--shared: the file is on storage other hosts see; a second agent
    (the destination of a live migration) serves it too.  Without it the
    second agent is refused, and told why."""
    assert cmd("volume", "create", "own", "--size", "16M")[0] == 0
    assert cmd("volume", "create", "mig", "--size", "16M", "--shared")[0] == 0
    rc, out, err = cmd("--json", "volume", "list")
    assert rc == 0, err
    other_dir = os.path.join(base_dir, "host-b")
    os.mkdir(other_dir)
    with agent_proc.AgentProcess(other_dir) as other, other.client() as b:
        b.call("bdev_uring_create", name="mig", filename=os.path.join(cmd.volume_dir, "mig"),
               shared=True)
        with pytest.raises(Exception) as exc:
            b.call("bdev_uring_create", name="own",
                   filename=os.path.join(cmd.volume_dir, "own"), shared=True)
        assert "did not create it with shared" in str(exc.value)
    # A resize re-exports nothing: the shared lock stays.
    assert cmd("volume", "resize", "mig", "--size", "32M")[0] == 0
    with agent.client() as a:
        (bdev,) = a.call("bdev_get_bdevs", name="mig")
        assert bdev["driver_specific"]["uring"]["shared"] is True
    rc, _, err = cmd("volume", "create", "m2", "--size", "16M", "--backend", "malloc",
                     "--shared")
    assert rc == 1 and "--shared is for file volumes" in err


def test_malloc_volume(cmd):
    rc, out, err = cmd("volume", "create", "m1", "--size", "4M", "--backend", "malloc",
                       "--json")
    assert rc == 0, err
    assert json.loads(out) == {"name": "m1", "backend": "malloc", "size": 4 << 20,
                               "path": None, "controllers": []}
    rc, _, err = cmd("volume", "resize", "m1", "--size", "8M")
    assert rc == 1 and "cannot be extended" in err
    assert cmd("volume", "delete", "m1")[0] == 0
    assert "No volumes." in cmd("volume", "list")[1]


def test_errors_are_clear(cmd):
    rc, _, err = cmd("volume", "delete", "nope")
    assert rc == 1 and "no such volume nope" in err and "volume list" in err
    rc, _, err = cmd("volume", "resize", "nope", "--size", "1G")
    assert rc == 1 and "no such volume nope" in err

    for bad in ("10X", "-1M", "0", "1.1K", "abc", "1000"):
        with pytest.raises(SystemExit) as exit_:
            cmd("volume", "create", "v", "--size", bad)
        assert exit_.value.code == 2
    rc, _, err = cmd("volume", "create", "v", "--size", "2K", "--block-size", "4096")
    assert rc == 1 and "4096-byte block size" in err

    assert cmd("volume", "create", "dup", "--size", "1M")[0] == 0
    rc, _, err = cmd("volume", "create", "dup", "--size", "1M")
    assert rc == 1 and "volume dup already exists" in err
    rc, _, err = cmd("volume", "create", "dup", "--size", "1M", "--backend", "malloc")
    assert rc == 1 and "already exists" in err

    rc, _, err = cmd("volume", "create", "../evil", "--size", "1M")
    assert rc == 1 and "not a valid volume name" in err
    assert not os.path.exists(os.path.join(os.path.dirname(cmd.volume_dir), "evil"))


def test_delete_refused_while_a_controller_serves_it(cmd, agent):
    assert cmd("volume", "create", "busy", "--size", "1M")[0] == 0
    with agent.client() as c:
        c.call("vhost_create_blk_controller", ctrlr="vm.busy.x", dev_name="busy")
        rc, out, err = cmd("volume", "list")
        assert "vm.busy.x" in out
        rc, _, err = cmd("volume", "delete", "busy")
        assert rc == 1 and "vm.busy.x" in err and "detach it first" in err
        assert os.path.exists(os.path.join(cmd.volume_dir, "busy"))
        c.call("vhost_delete_controller", ctrlr="vm.busy.x")
    assert cmd("volume", "delete", "busy")[0] == 0


def test_installed_script(agent, base_dir):
    exe = shutil.which("spdk-backend") or None
    argv = [exe] if exe else [sys.executable, "-m", "spdk_backend.cmd.cli"]
    voldir = os.path.join(base_dir, "v")
    proc = subprocess.run(argv + ["--rpc-socket", agent.rpc_socket, "volume", "create",
                                  "s1", "--size", "2M", "--volume-dir", voldir, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["path"] == os.path.join(voldir, "s1")


def test_create_leaves_no_file_when_the_agent_refuses_it(base_dir, capsys):
    """The agent serves files only from allowed_backing_dirs: the volume's
    file, made first, is removed again."""
    allowed = os.path.join(base_dir, "allowed")
    os.mkdir(allowed)
    with agent_proc.AgentProcess(base_dir, allowed_backing_dirs=allowed) as agent:
        voldir = os.path.join(base_dir, "elsewhere")
        rc = cli.main(["--rpc-socket", agent.rpc_socket, "volume", "create", "v1",
                       "--size", "1M", "--volume-dir", voldir])
        err = capsys.readouterr().err
        assert rc == 1 and "outside allowed_backing_dirs" in err
        assert os.listdir(voldir) == []
        rc = cli.main(["--rpc-socket", agent.rpc_socket, "volume", "create", "v1",
                       "--size", "1M", "--volume-dir", allowed])
        assert rc == 0 and os.listdir(allowed) == ["v1"]
