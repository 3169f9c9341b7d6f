"""The operator workflow through the ``spdk-backend`` command, end to end.

A real agent process (the engine's vhost-user-blk target), a real libvirtd
and the TCG test guest: ``volume create``, ``domain prepare``, start,
``attach --live``; the guest sees the disk, writes and reads it, the host
finds the data in the volume's file; ``detach`` removes it from the guest
and the controller from the agent.  Failed attaches leave no controller.
"""

import grp
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from spdk_backend.agent import client as agent_client
from spdk_backend.cmd import _common
from tests.support import agent_proc
from tests.support.guest import guest_disks, new_guest_disk, wait_guest_disks
from tests.support import libvirt_domain as lvd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def workdir():
    path = lvd.make_workdir("sbcli-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(workdir):
    """The agent, its controller sockets open to QEMU's group (kvm)."""
    base = workdir / "agent"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    # libvirt's QEMU runs as libvirt-qemu:kvm on Debian; anywhere else, open
    # the sockets to everyone.
    access = ({"vhost_socket_group": "kvm", "vhost_socket_mode": "0660"}
              if _has_group("kvm") else {"vhost_socket_mode": "0666"})
    with agent_proc.AgentProcess(str(base), **access) as proc:
        yield proc


@pytest.fixture(scope="module")
def domains(conn, workdir, image):
    with lvd.domain_factory(conn, workdir, image) as make:
        yield make


def _has_group(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _command():
    exe = shutil.which("spdk-backend")
    return [exe] if exe else [sys.executable, "-m", "spdk_backend.cmd.cli"]


def sb(agent, *args, check=True, timeout=120):
    """Run ``spdk-backend --rpc-socket ... ARGS``; (rc, stdout, stderr)."""
    env = dict(os.environ, SPDK_BACKEND_LIBVIRT_URI=lvd.URI,
               SPDK_BACKEND_VOLUME_DIR=os.path.join(agent.base_dir, "volumes"))
    proc = subprocess.run(_command() + ["--rpc-socket", agent.rpc_socket] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError("spdk-backend %s failed (%d):\n%s%s" % (
            " ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, proc.stdout, proc.stderr


def controllers(agent):
    with agent_client.AgentClient(agent.rpc_socket, timeout=30) as c:
        return {x["ctrlr"]: x for x in c.call("vhost_get_controllers")}


def test_volume_prepare_attach_io_detach(agent, domains):
    d = domains("cli")
    vol = "vol-" + d.name[-8:]

    rc, out, _ = sb(agent, "volume", "create", vol, "--size", "64M")
    assert "Created file volume %s (64M)" % vol in out
    path = os.path.join(agent.base_dir, "volumes", vol)
    assert os.path.getsize(path) == 64 << 20

    rc, out, _ = sb(agent, "domain", "prepare", d.name)
    assert "ready for vhost-user disks" in out and "shared" in out
    rc, out, _ = sb(agent, "--json", "domain", "prepare", d.name)
    assert json.loads(out)["changed"] is False          # idempotent

    d.start()
    shell = d.shell
    before = guest_disks(shell)

    rc, out, _ = sb(agent, "attach", d.name, vol, "--live", "--queues", "2")
    ctrlr = _common.ctrlr_name(d.name, vol)
    assert "Attached volume %s to domain %s as vd" % (vol, d.name) in out
    assert "live" in out and "persistent" not in out and ctrlr in out
    ctrl = controllers(agent)[ctrlr]
    assert ctrl["backend_specific"]["block"]["bdev"] == vol
    assert ctrl["max_queues"] == 2
    sock = os.stat(ctrl["socket"])
    assert sock.st_mode & 0o060 == 0o060                 # QEMU's group may connect

    dev = new_guest_disk(shell, before)
    assert int(shell.check("cat /sys/block/%s/size" % dev)) * 512 == 64 << 20
    assert len(shell.check("ls /sys/block/%s/mq" % dev).split()) == 2
    assert ctrlr in controllers(agent) and controllers(agent)[ctrlr]["connected"]

    rc, out, _ = sb(agent, "--json", "domain", "disks", d.name)
    (disk,) = json.loads(out)
    assert disk["target_dev"] == dev and disk["live"] and not disk["config"]
    assert disk["socket_path"] == ctrl["socket"]

    # The guest writes a pattern and reads it back uncached; the host finds
    # the same bytes in the volume's file.
    out = shell.check(
        "dd if=/dev/urandom of=/tmp/pat bs=4096 count=256 2>/dev/null && "
        "dd if=/tmp/pat of=/dev/%s bs=4096 seek=16 conv=fsync 2>/dev/null && "
        "md5sum /tmp/pat" % dev, timeout=90)
    written = out.split()[0]
    out = shell.check("echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/%s bs=4096 "
                      "skip=16 count=256 2>/dev/null | md5sum" % dev, timeout=90)
    assert out.split()[0] == written
    with open(path, "rb") as f:
        f.seek(16 * 4096)
        assert hashlib.md5(f.read(256 * 4096)).hexdigest() == written

    # Attached: the volume cannot be deleted, and says why.
    rc, _, err = sb(agent, "volume", "delete", vol, check=False)
    assert rc == 1 and ctrlr in err and "detach" in err

    # Attaching again is a no-op that reports the same disk.
    rc, out, _ = sb(agent, "--json", "attach", d.name, vol, "--live")
    again = json.loads(out)
    assert again["target_dev"] == dev and again["created_ctrlr"] is False

    rc, out, _ = sb(agent, "detach", d.name, vol)
    assert "Detached volume %s (%s) from domain %s" % (vol, dev, d.name) in out
    assert "controller %s deleted" % ctrlr in out
    wait_guest_disks(shell, absent=dev)
    assert ctrlr not in controllers(agent)
    assert json.loads(sb(agent, "--json", "domain", "disks", d.name)[1]) == []

    rc, _, err = sb(agent, "detach", d.name, vol, check=False)
    assert rc == 1 and "not attached to domain %s" % d.name in err

    # The data stays with the volume: attach again and read it back.
    before = guest_disks(shell)
    sb(agent, "attach", d.name, vol)                    # live + persistent
    dev = new_guest_disk(shell, before)
    out = shell.check("dd if=/dev/%s bs=4096 skip=16 count=256 2>/dev/null | md5sum"
                      % dev, timeout=90)
    assert out.split()[0] == written
    info = json.loads(sb(agent, "--json", "domain", "disks", d.name)[1])
    assert info[0]["live"] and info[0]["config"]
    sb(agent, "detach", d.name, vol)
    wait_guest_disks(shell, absent=dev)
    assert ctrlr not in controllers(agent)
    assert json.loads(sb(agent, "--json", "domain", "disks", d.name)[1]) == []

    sb(agent, "volume", "delete", vol)
    assert not os.path.exists(path)


def test_failed_attach_leaves_no_controller(agent, domains):
    """Running guest without shared memory: the policy refuses, the
    controller the attach made is deleted again."""
    d = domains("priv")
    d.start(wait_shell=False)
    vol = "pv-" + d.name[-8:]
    sb(agent, "volume", "create", vol, "--size", "8M")
    before = set(controllers(agent))
    rc, _, err = sb(agent, "attach", d.name, vol, check=False)
    assert rc == 1
    assert "spdk-backend domain prepare %s" % d.name in err and "restart" in err
    assert set(controllers(agent)) == before
    rc, out, _ = sb(agent, "--json", "volume", "list")
    assert [v["controllers"] for v in json.loads(out) if v["name"] == vol] == [[]]
    sb(agent, "volume", "delete", vol)


def test_attach_qemu_cannot_open_is_rolled_back(workdir, domains):
    """An agent whose sockets QEMU (not root) cannot open: libvirt's
    attach fails in QEMU, the CLI deletes the controller it made."""
    base = workdir / "closed-agent"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    with agent_proc.AgentProcess(str(base), vhost_socket_mode="0600") as closed:
        d = domains("closed", memory_backing="<source type='memfd'/>"
                                             "<access mode='shared'/>")
        d.start(wait_shell=False)
        sb(closed, "volume", "create", "cv", "--size", "8M")
        rc, _, err = sb(closed, "attach", d.name, "cv", "--live", check=False)
        assert rc == 1 and "Permission denied" in err, err
        assert controllers(closed) == {}
        rc, out, _ = sb(closed, "--json", "domain", "disks", d.name)
        assert json.loads(out) == []
        sb(closed, "volume", "delete", "cv")


def test_hotplugged_volume_after_agent_kill_is_what_the_stack_allows(agent, domains):
    """A disk attached with ``--live`` to a running guest, then the agent is
    SIGKILLed and started again.  ``attach`` says whether QEMU will
    reconnect the disk (``reconnects``, from libvirt's version); this holds
    on the stack under test: on libvirt 11.3 the guest's reads reach the
    restarted agent with the data written before; on libvirt 9.0 QEMU never
    reconnects (the CLI prints a note), and the controller stays idle."""
    d = domains("hprestart", memory_backing="<source type='memfd'/>"
                                            "<access mode='shared'/>")
    d.start()
    shell = d.shell
    vol = "hv-" + d.name[-8:]
    sb(agent, "volume", "create", vol, "--size", "16M")
    before = guest_disks(shell)
    rc, out, _ = sb(agent, "--json", "attach", d.name, vol, "--live", "--queues", "1")
    info = json.loads(out)
    assert info["hotplugged"] is True
    rc, status_out, _ = sb(agent, "--json", "status", "--interval", "0")
    stack = json.loads(status_out)["stack"]
    assert stack["error"] is None and stack["hypervisor"] == "QEMU"
    assert info["reconnects"] == stack["hotplug_reconnects"]
    dev = new_guest_disk(shell, before)
    written = shell.check(
        "dd if=/dev/urandom of=/tmp/a bs=4096 count=64 2>/dev/null && "
        "dd if=/tmp/a of=/dev/%s bs=4096 conv=fsync 2>/dev/null && md5sum /tmp/a"
        % dev, timeout=60).split()[0]
    ctrlr = _common.ctrlr_name(d.name, vol)

    agent.kill9()
    agent.start()
    assert ctrlr in controllers(agent)
    if info["reconnects"]:
        out = shell.check("echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/%s bs=4096 "
                          "count=64 iflag=direct 2>/dev/null | md5sum" % dev, timeout=120)
        assert out.split()[0] == written
        assert controllers(agent)[ctrlr]["connected"]
        sb(agent, "detach", d.name, vol)
        wait_guest_disks(shell, absent=dev)
    else:
        # Two reconnect periods (10 s each) and then some: nobody came.
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            assert not controllers(agent)[ctrlr]["connected"]
            time.sleep(1)
        d.destroy()
        sb(agent, "rpc", "vhost_delete_controller", "ctrlr=%s" % ctrlr)
    sb(agent, "volume", "delete", vol)


def test_unknown_domain_and_volume(agent):
    missing = lvd.unique_name("missing")
    sb(agent, "volume", "create", "uv", "--size", "1M")
    try:
        before = set(controllers(agent))
        rc, _, err = sb(agent, "attach", missing, "uv", check=False)
        assert rc == 1 and "domain %s does not exist" % missing in err
        assert set(controllers(agent)) == before
        rc, _, err = sb(agent, "attach", missing, "nosuchvol", check=False)
        assert rc == 1 and "no such volume nosuchvol" in err
        rc, _, err = sb(agent, "domain", "prepare", missing, check=False)
        assert rc == 1 and "does not exist" in err
        rc, _, err = sb(agent, "detach", missing, "uv", check=False)
        assert rc == 1 and "does not exist" in err
    finally:
        sb(agent, "volume", "delete", "uv")


def test_attached_volume_survives_agent_restart(agent, domains):
    """The agent restores the volume's bdev and controller from its state
    file; QEMU reconnects (libvirt's reconnect timeout) and the guest's
    disk works again, with its data.

    The disk is in the definition when the guest starts: QEMU 7.2 under
    libvirt 9.0 does not reconnect a vhost-user disk that was hot-plugged
    (its chardev stays "disconnected"), while one from the command line
    does (docs/cli.md says so)."""
    d = domains("restart", memory_backing="<source type='memfd'/>"
                                          "<access mode='shared'/>")
    vol = "rv-" + d.name[-8:]
    sb(agent, "volume", "create", vol, "--size", "16M")
    rc, out, _ = sb(agent, "attach", d.name, vol, "--queues", "1")
    assert "(persistent, 1 queue)" in out
    d.start()
    shell = d.shell
    wait_present = "(i=0; until [ -e /sys/block/vda ]; do i=$((i+1)); [ $i -gt 300 ] " \
                   "&& exit 1; sleep 0.1; done)"
    shell.check(wait_present, timeout=45)
    dev = "vda"
    written = shell.check(
        "dd if=/dev/urandom of=/tmp/a bs=4096 count=64 2>/dev/null && "
        "dd if=/tmp/a of=/dev/%s bs=4096 conv=fsync 2>/dev/null && md5sum /tmp/a"
        % dev, timeout=60).split()[0]

    agent.stop()
    agent.start()
    ctrlr = _common.ctrlr_name(d.name, vol)
    assert ctrlr in controllers(agent)

    # Reads reach the restarted agent once QEMU reconnected.
    out = shell.check("echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/%s bs=4096 "
                      "count=64 iflag=direct 2>/dev/null | md5sum" % dev, timeout=120)
    assert out.split()[0] == written
    assert controllers(agent)[ctrlr]["connected"]
    out = shell.check(
        "dd if=/dev/urandom of=/tmp/b bs=4096 count=64 2>/dev/null && "
        "dd if=/tmp/b of=/dev/%s bs=4096 seek=64 conv=fsync 2>/dev/null && md5sum /tmp/b"
        % dev, timeout=60)
    with open(os.path.join(agent.base_dir, "volumes", vol), "rb") as f:
        f.seek(64 * 4096)
        assert hashlib.md5(f.read(64 * 4096)).hexdigest() == out.split()[0]

    sb(agent, "detach", d.name, vol)
    wait_guest_disks(shell, absent=dev)
    sb(agent, "volume", "delete", vol)
