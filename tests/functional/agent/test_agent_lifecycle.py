"""The real daemon: persistence across kill -9, clean shutdown, state file
corruption, the state_dir lock, socket permissions."""

import grp
import json
import os
import stat
import subprocess

import pytest

from spdk_backend import exception
from spdk_backend.agent import state as agent_state
from tests.support import agent_proc


def build_config(c, base_dir):
    img = os.path.join(base_dir, "disk.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    c.call("bdev_malloc_create", name="m0", num_blocks=2048, block_size=512)
    c.call("bdev_null_create", name="n0", num_blocks=2048, block_size=4096)
    # Two bdevs on one file: only when both say shared.
    c.call("bdev_uring_create", name="u0", filename=img, shared=True)
    c.call("bdev_aio_create", name="a0", filename=img, block_size=4096, shared=True)
    c.call("bdev_set_qos_limit", name="u0", rw_ios_per_sec=20000)
    for i, bdev in enumerate(("m0", "n0", "u0", "a0")):
        c.call("vhost_create_blk_controller", ctrlr="vhost.%d" % i, dev_name=bdev,
               readonly=(i == 1))
    c.call("vhost_controller_set_coalescing", ctrlr="vhost.2", delay_base_us=20,
           iops_threshold=5000)


def snapshot(c):
    bdevs = sorted((b["name"], b["uuid"], b["block_size"], b["num_blocks"],
                    b["assigned_rate_limits"]["rw_ios_per_sec"],
                    b["driver_specific"].get("uring", {}).get("shared"))
                   for b in c.call("bdev_get_bdevs"))
    ctrlrs = sorted((x["ctrlr"], x["socket"], x["backend_specific"]["block"]["bdev"],
                     x["backend_specific"]["block"]["readonly"], x["delay_base_us"],
                     x["iops_threshold"]) for x in c.call("vhost_get_controllers"))
    return bdevs, ctrlrs


def test_kill9_restart_restores_everything(base_dir):
    agent = agent_proc.AgentProcess(base_dir)
    try:
        agent.start()
        with agent.client() as c:
            build_config(c, base_dir)
            before = snapshot(c)
        agent.kill9()
        assert os.path.exists(agent.rpc_socket)  # a crash leaves the socket
        agent.start()
        with agent.client() as c:
            assert snapshot(c) == before
            for _, sock, *_ in before[1]:
                assert stat.S_ISSOCK(os.stat(sock).st_mode)
            # and it still takes changes
            c.call("vhost_delete_controller", ctrlr="vhost.3")
            c.call("bdev_aio_delete", name="a0")
        assert agent.stop() == 0
        agent.start()
        with agent.client() as c:
            bdevs, ctrlrs = snapshot(c)
        assert [b[0] for b in bdevs] == ["m0", "n0", "u0"]
        assert [x[0] for x in ctrlrs] == ["vhost.0", "vhost.1", "vhost.2"]
    finally:
        agent.kill9()


def test_sigterm_cleans_sockets_and_keeps_state(base_dir):
    agent = agent_proc.AgentProcess(base_dir)
    try:
        agent.start()
        with agent.client() as c:
            c.call("bdev_malloc_create", name="m0", num_blocks=64, block_size=512)
            c.call("vhost_create_blk_controller", ctrlr="vhost.0", dev_name="m0")
        saved = agent_state.load_file(agent.state_file)
        assert agent.stop() == 0
        assert not os.path.exists(agent.rpc_socket)
        assert os.listdir(agent.vhost_socket_dir) == []
        # A clean stop folds the log into config.json: that file alone is whole.
        assert json.load(open(agent.state_file)) == saved
        assert [c["params"]["name"] for c in saved["subsystems"][0]["config"]
                if "params" in c] == ["m0"]
        assert "shutting down" in agent.log()
        # SIGINT too
        agent.start()
        agent.proc.send_signal(2)
        assert agent.wait_exit() == 0
        assert not os.path.exists(agent.rpc_socket)
    finally:
        agent.kill9()


@pytest.mark.parametrize("content", [
    b'{"subsystems": [{"subsystem": "bdev", "config": [{"method": "bdev_mall',
    b"",
    b"\x00" * 64,
    b'{"subsystems": 3}',
])
def test_corrupt_state_file_refuses_start(base_dir, content):
    agent = agent_proc.AgentProcess(base_dir)
    os.makedirs(agent.state_dir)
    with open(agent.state_file, "wb") as f:
        f.write(content)
    agent.start(wait=False)
    assert agent.wait_exit(60) == 1
    log = agent.log()
    assert agent.state_file in log and "kept for inspection" in log
    assert open(agent.state_file, "rb").read() == content
    assert not os.path.exists(agent.rpc_socket)


def test_second_agent_refused_by_lock(base_dir, agent):
    other_dir = os.path.join(base_dir, "other")
    os.mkdir(other_dir)
    other = agent_proc.AgentProcess(other_dir, state_dir=agent.state_dir)
    other.start(wait=False)
    assert other.wait_exit(60) == 1
    assert "another spdk-backend-agent (pid %d)" % agent.proc.pid in other.log()
    assert not os.path.exists(other.rpc_socket)
    with agent.client() as c:
        assert c.call("spdk_get_version")


def test_two_agents_serve_one_file_only_when_both_say_shared(base_dir, agent):
    img = os.path.join(base_dir, "shared.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    other_dir = os.path.join(base_dir, "host-b")
    os.mkdir(other_dir)
    other = agent_proc.AgentProcess(other_dir)
    try:
        other.start()
        with agent.client() as a, other.client() as b:
            a.call("bdev_uring_create", name="u0", filename=img)
            with pytest.raises(exception.AgentError) as exc:
                b.call("bdev_uring_create", name="u0", filename=img, shared=True)
            assert "did not create it with shared" in str(exc.value)
            a.call("bdev_uring_delete", name="u0")
            a.call("bdev_uring_create", name="u0", filename=img, shared=True)
            b.call("bdev_aio_create", name="u0", filename=img, shared=True)
            # A third server without shared is refused, and says why.
            with pytest.raises(exception.AgentError) as exc:
                a.call("bdev_uring_create", name="u1", filename=img)
            msg = str(exc.value)
            assert "served already" in msg and "shared" in msg, msg
            assert [x["name"] for x in a.call("bdev_get_bdevs")] == ["u0"]
        # shared is part of the saved configuration.
        assert other.stop() == 0
        other.start()
        with other.client() as b:
            (bdev,) = b.call("bdev_get_bdevs", name="u0")
            assert bdev["driver_specific"]["uring"]["shared"] is True
    finally:
        other.kill9()


def test_socket_permissions(base_dir):
    group = grp.getgrgid(os.getgid()).gr_name
    agent = agent_proc.AgentProcess(base_dir, rpc_socket_mode="0600",
                                    rpc_socket_group=group)
    try:
        agent.start()
        st = os.stat(agent.rpc_socket)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_gid == os.getgid()
    finally:
        agent.stop()


def test_socket_refuses_unprivileged_user(base_dir):
    if os.getuid() != 0:
        pytest.skip("needs root to switch to another user")
    agent = agent_proc.AgentProcess(base_dir, rpc_socket_mode="0660")
    try:
        agent.start()
        os.chmod(base_dir, 0o755)
        probe = ("import socket; s = socket.socket(socket.AF_UNIX); "
                 "s.connect(%r)" % agent.rpc_socket)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "python3", "-c", probe], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and "Permission denied" in r.stderr
    finally:
        agent.stop()


def test_unknown_group_is_a_clear_error(base_dir):
    agent = agent_proc.AgentProcess(base_dir, rpc_socket_group="no-such-group-x")
    agent.start(wait=False)
    assert agent.wait_exit(60) == 1
    assert "no-such-group-x" in agent.log()


def test_failed_replay_keeps_entry(base_dir):
    agent = agent_proc.AgentProcess(base_dir)
    try:
        img = os.path.join(base_dir, "disk.img")
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        agent.start()
        with agent.client() as c:
            c.call("bdev_uring_create", name="u0", filename=img)
            c.call("vhost_create_blk_controller", ctrlr="vhost.0", dev_name="u0")
        agent.stop()
        os.unlink(img)
        agent.start()
        log = agent.log()
        assert "could not restore bdev_uring_create" in log
        saved = json.load(open(agent.state_file))
        methods = [x["method"] for s in saved["subsystems"] for x in s["config"]]
        assert "bdev_uring_create" in methods and "vhost_create_blk_controller" in methods
        with agent.client() as c:
            with pytest.raises(exception.AgentNotFound):
                c.call("bdev_get_bdevs", name="u0")
            assert c.call("vhost_delete_controller", ctrlr="vhost.0") is True
            assert c.call("bdev_uring_delete", name="u0") is True
        saved = agent_state.load_file(agent.state_file)
        assert [x["method"] for s in saved["subsystems"] for x in s["config"]] == [
            "bdev_wait_for_examine"]
    finally:
        agent.kill9()


def test_engine_start_failure_is_a_clear_error(base_dir):
    agent = agent_proc.AgentProcess(base_dir, core_mask="0xZZ")
    agent.start(wait=False)
    assert agent.wait_exit(60) == 1
    assert "0xZZ" in agent.log()
    assert not os.path.exists(agent.rpc_socket)
    # the lock was released: a good config starts on the same state_dir
    good = agent_proc.AgentProcess(base_dir)
    with good:
        with good.client() as c:
            assert c.call("spdk_get_version")
