"""Agent upgrades under a running guest: no disconnect, no lost write.

A libvirt guest (TCG, memfd memory) has two vhost-user disks from the
agent: one in its definition when it starts and one hot-plugged with
``attach --live`` (the Nova path; libvirt 9.0 gives that one no reconnect,
docs/support.md).  While the guest writes both disks (O_DIRECT, fresh data
per round, a copy kept in the guest), the agent re-executes itself
UPGRADES times, alternately by ``spdk-backend upgrade`` (the
``framework_upgrade`` RPC) and by SIGHUP (the systemd unit's reload).
Each time the same pid comes back, both controllers say their session was
adopted, the agent never logs a front-end disconnect, and the guest's loops
go on; at the end the guest saw no I/O error and the volume files hold
exactly what the guest wrote last.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from spdk_backend.agent import client as agent_client
from spdk_backend.cmd import _common
from tests.support import agent_proc
from tests.support import libvirt_domain as lvd
from tests.support.guest import guest_disks, new_guest_disk

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MB = 1 << 20
UPGRADES = 5
CHUNKS = 4                      # each loop rewrites 1 MiB chunks 0..3 of its disk
MEMFD = "<source type='memfd'/><access mode='shared'/>"


@pytest.fixture(scope="module")
def workdir():
    path = lvd.make_workdir("sbupg-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(workdir):
    base = workdir / "agent"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    with agent_proc.AgentProcess(str(base), vhost_socket_group="kvm",
                                 vhost_socket_mode="0660") as proc:
        yield proc


@pytest.fixture(scope="module")
def domains(conn, workdir, image):
    with lvd.domain_factory(conn, workdir, image) as make:
        yield make


def _command():
    exe = shutil.which("spdk-backend")
    return [exe] if exe else [sys.executable, "-m", "spdk_backend.cmd.cli"]


def sb(agent, *args, timeout=120):
    env = dict(os.environ, SPDK_BACKEND_LIBVIRT_URI=lvd.URI,
               SPDK_BACKEND_VOLUME_DIR=os.path.join(agent.base_dir, "volumes"))
    proc = subprocess.run(_command() + ["--rpc-socket", agent.rpc_socket] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError("spdk-backend %s failed (%d):\n%s%s" % (
            " ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def controllers(agent):
    with agent_client.AgentClient(agent.rpc_socket, timeout=30) as c:
        return {x["ctrlr"]: x for x in c.call("vhost_get_controllers")}


def start_loop(shell, dev):
    """Per round: 1 MiB of fresh data to chunk k of dev (O_DIRECT), the
    guest's copy kept in /tmp/<dev>/chunk<k>; /tmp/<dev>/rounds counts
    rounds, /tmp/<dev>/err collects failures, /tmp/<dev>/stop ends it."""
    d = "/tmp/%s" % dev
    shell.check("mkdir -p {d}; rm -f {d}/stop {d}/err; echo 0 > {d}/rounds".format(d=d))
    shell.job_start(
        "loop-" + dev,
        "n=0; k=0; while [ ! -e {d}/stop ]; do "
        "dd if=/dev/urandom of={d}/c bs=64k count=16 2>/dev/null; "
        "dd if={d}/c of=/dev/{dev} bs=64k seek=$((k*16)) oflag=direct conv=notrunc "
        "2>/dev/null || echo write-$n >> {d}/err; "
        "mv {d}/c {d}/chunk$k; "
        "n=$((n+1)); k=$((n % {chunks})); echo $n > {d}/rounds; "
        "done".format(d=d, dev=dev, chunks=CHUNKS))


def rounds(shell, dev):
    return int(shell.check("cat /tmp/%s/rounds" % dev).strip() or 0)


def stop_loop(shell, dev):
    shell.check("touch /tmp/%s/stop" % dev)
    shell.job_wait("loop-" + dev, 120)
    assert shell.check("cat /tmp/%s/err 2>/dev/null; true" % dev).strip() == ""


def guest_md5(shell, dev):
    """md5 of the CHUNKS MiB the guest wrote last (chunks it never wrote are zeros)."""
    d = "/tmp/%s" % dev
    shell.check("k=0; while [ $k -lt {n} ]; do [ -e {d}/chunk$k ] || dd if=/dev/zero "
                "of={d}/chunk$k bs=64k count=16 2>/dev/null; k=$((k+1)); done"
                .format(d=d, n=CHUNKS))
    return shell.check("cat %s | md5sum" % " ".join(
        "%s/chunk%d" % (d, k) for k in range(CHUNKS)), timeout=60).split()[0]


def file_md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read(CHUNKS * MB)).hexdigest()


def upgrade(agent, how):
    """Re-execute the agent; returns once the new process serves."""
    pid = agent.proc.pid
    taken = agent.log().count("took over ")
    if how == "cli":
        out = sb(agent, "upgrade")
        assert "upgraded to" in out, out
    else:
        os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while agent.log().count("took over ") == taken:
        assert agent.proc.poll() is None, agent.log()[-4000:]
        assert time.monotonic() < deadline, "no new agent process:\n" + agent.log()[-4000:]
        time.sleep(0.05)
    agent.wait_ready()
    assert agent.proc.pid == pid and agent.proc.poll() is None


def test_upgrades_keep_guest_disks_connected(agent, domains):
    d = domains("upg", memory_backing=MEMFD)
    vols = ["ua-" + d.name[-8:], "ub-" + d.name[-8:]]
    for vol in vols:
        sb(agent, "volume", "create", vol, "--size", "16M")
    # The first disk is in the definition when the guest starts.
    sb(agent, "attach", d.name, vols[0], "--queues", "1")
    d.start()
    shell = d.shell
    shell.check("(i=0; until [ -e /sys/block/vda ]; do i=$((i+1)); [ $i -gt 300 ] && "
                "exit 1; sleep 0.1; done)", timeout=45)
    # The second is hot-plugged.
    before = guest_disks(shell)
    sb(agent, "attach", d.name, vols[1], "--live", "--queues", "1")
    devs = ["vda", new_guest_disk(shell, before)]
    ctrlrs = [_common.ctrlr_name(d.name, vol) for vol in vols]
    for dev in devs:
        start_loop(shell, dev)

    for i in range(UPGRADES):
        upgrade(agent, "cli" if i % 2 == 0 else "sighup")
        info = controllers(agent)
        for ctrlr in ctrlrs:
            assert info[ctrlr]["connected"] and info[ctrlr]["adopted"], info[ctrlr]
        # Both loops go on: each finishes two more rounds (one of them
        # started after the new process served).
        done = {dev: rounds(shell, dev) for dev in devs}
        deadline = time.monotonic() + 90
        for dev in devs:
            while rounds(shell, dev) < done[dev] + 2:
                assert time.monotonic() < deadline, "%s stalled after upgrade %d" % (dev, i)
                time.sleep(0.5)
        assert shell.check("cat /tmp/*/err 2>/dev/null; true").strip() == ""
        now = controllers(agent)
        for c in ctrlrs:
            assert now[c]["completed_ios"] > info[c]["completed_ios"], (info[c], now[c])

    for dev in devs:
        stop_loop(shell, dev)
    for dev, vol in zip(devs, vols):
        assert guest_md5(shell, dev) == file_md5(
            os.path.join(agent.base_dir, "volumes", vol))
    log = agent.log()
    assert log.count("took over 2 session(s) without a disconnect") == UPGRADES
    assert "front-end disconnected" not in log
    assert "session not handed over" not in log

    d.destroy()
    for ctrlr in ctrlrs:
        with agent.client() as c:
            c.call("vhost_delete_controller", {"ctrlr": ctrlr})
    for vol in vols:
        sb(agent, "volume", "delete", vol)
