"""Agent lifecycle with a fake engine: lock, state file, replay."""

import errno
import json
import os

import pytest

from spdk_backend.agent import client as agent_client
from spdk_backend.agent import service
from spdk_backend.agent import state as agent_state
from tests.support import fake_engine


def test_state_saved_after_each_change_and_replayed(short_tmp):
    open(os.path.join(short_tmp, "disk.img"), "wb").truncate(1 << 20)
    with fake_engine.InProcessAgent(short_tmp) as a:
        with agent_client.AgentClient(a.opts.rpc_socket) as c:
            c.call("bdev_malloc_create", name="m0", num_blocks=64, block_size=512)
            c.call("bdev_aio_create", name="a0", filename=os.path.join(short_tmp, "disk.img"),
                   block_size=512)
            c.call("bdev_null_create", name="n0", num_blocks=64, block_size=512)
            c.call("bdev_null_resize", name="n0", new_size=2)
            c.call("bdev_set_qos_limit", name="m0", rw_ios_per_sec=5000)
            c.call("vhost_create_blk_controller", ctrlr="c0", dev_name="m0", readonly=True)
            c.call("vhost_controller_set_coalescing", ctrlr="c0", delay_base_us=10,
                   iops_threshold=1000)
            uuid = c.call("bdev_get_bdevs", name="m0")[0]["uuid"]
            # config.json and its log (docs/agent.md, "Persistence").
            saved = agent_state.load_file(os.path.join(a.opts.state_dir, "config.json"))
            assert saved == {"subsystems": [
                {"subsystem": "bdev", "config": c.call("framework_get_config", name="bdev")},
                {"subsystem": "vhost_blk",
                 "config": c.call("framework_get_config", name="vhost_blk")}]}
        first_engine = a.engine
    bdev_calls = {x["method"]: x["params"] for x in saved["subsystems"][0]["config"]
                  if "params" in x}
    assert bdev_calls["bdev_malloc_create"]["uuid"] == uuid
    assert bdev_calls["bdev_null_create"]["num_blocks"] == 4096
    assert "bdev_aio_create" in bdev_calls

    with fake_engine.InProcessAgent(short_tmp) as b:
        assert b.engine is not first_engine
        assert set(b.engine.bdevs) == {"m0", "a0", "n0"}
        assert b.engine.bdevs["m0"]["uuid"] == uuid
        assert b.engine.bdevs["m0"]["qos"] == {"rw_ios_per_sec": 5000}
        assert b.engine.ctrlrs["c0"]["readonly"] is True
        assert b.engine.ctrlrs["c0"]["delay"] == 10
        # Each start folds the log into config.json: that file alone is whole.
        again = json.load(open(os.path.join(b.opts.state_dir, "config.json")))
        assert again == saved


def test_second_agent_on_same_state_dir_refused(short_tmp):
    with fake_engine.InProcessAgent(short_tmp):
        second = service.Agent(fake_engine.agent_opts(short_tmp, rpc_socket=os.path.join(
            short_tmp, "other.sock")), engine_factory=lambda o: fake_engine.FakeEngine())
        with pytest.raises(service.AgentLockedError) as err:
            second.prepare()
        assert str(os.getpid()) in str(err.value)
        assert second.engine is None


def test_corrupt_state_refuses_start_and_is_kept(short_tmp):
    state_dir = os.path.join(short_tmp, "state")
    os.makedirs(state_dir)
    path = os.path.join(state_dir, "config.json")
    with open(path, "w") as f:
        f.write('{"subsystems": [{"subsystem": "bdev", "config": [{"method": "bdev_m')
    started = []
    agent = service.Agent(fake_engine.agent_opts(short_tmp),
                          engine_factory=lambda o: started.append(1))
    with pytest.raises(agent_state.StateFileError) as err:
        agent.prepare()
    assert path in str(err.value)
    assert started == []  # refused before the engine starts
    assert open(path).read().endswith('"bdev_m')
    assert agent.lock.fd is None  # lock released


def test_failed_replay_kept_pending_and_deletable(short_tmp):
    state_dir = os.path.join(short_tmp, "state")
    os.makedirs(state_dir)
    gone = {"method": "bdev_uring_create", "params": {"name": "u0", "filename": "/no/such"}}
    ok = {"method": "bdev_malloc_create", "params": {"name": "m0", "num_blocks": 8,
                                                     "block_size": 512}}
    with open(os.path.join(state_dir, "config.json"), "w") as f:
        json.dump({"subsystems": [{"subsystem": "bdev", "config": [gone, ok]},
                                  {"subsystem": "accel", "config": []}]}, f)
    with fake_engine.InProcessAgent(short_tmp) as a:
        assert set(a.engine.bdevs) == {"m0"}
        saved = json.load(open(os.path.join(state_dir, "config.json")))
        assert gone in saved["subsystems"][0]["config"]
        with agent_client.AgentClient(a.opts.rpc_socket) as c:
            assert c.call("bdev_uring_delete", name="u0") is True
        saved = agent_state.load_file(os.path.join(state_dir, "config.json"))
        assert [x["params"]["name"] for x in saved["subsystems"][0]["config"]
                if "params" in x] == ["m0"]
    # A clean stop folds the log into config.json.
    saved = json.load(open(os.path.join(state_dir, "config.json")))
    assert [x["params"]["name"] for x in saved["subsystems"][0]["config"]
            if "params" in x] == ["m0"]


def test_state_write_failure_is_reported(short_tmp, monkeypatch):
    real = agent_state.os.fdatasync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with fake_engine.InProcessAgent(short_tmp) as a:
        path = os.path.join(a.opts.state_dir, "config.json")
        with agent_client.AgentClient(a.opts.rpc_socket) as c:
            monkeypatch.setattr(agent_state.os, "fdatasync", full)
            with pytest.raises(Exception) as err:
                c.call("bdev_malloc_create", name="m0", num_blocks=8, block_size=512)
            assert err.value.code == -errno.ENOSPC
            assert "could not save its state" in str(err.value)
            # The failed append left no record behind.
            assert agent_state.load_file(path)["subsystems"][0]["config"] == [
                {"method": "bdev_wait_for_examine"}]
            monkeypatch.setattr(agent_state.os, "fdatasync", real)
            # The next write folds the whole record into config.json, m0 too.
            c.call("bdev_malloc_create", name="m1", num_blocks=8, block_size=512)
            names = [x["params"]["name"] for x in json.load(open(path))["subsystems"][0][
                "config"] if "params" in x]
            assert names == ["m0", "m1"]
            c.call("bdev_malloc_create", name="m2", num_blocks=8, block_size=512)
            names = [x["params"]["name"] for x in agent_state.load_file(path)[
                "subsystems"][0]["config"] if "params" in x]
            assert names == ["m0", "m1", "m2"]


def test_compaction_failure_is_reported(short_tmp):
    with fake_engine.InProcessAgent(short_tmp) as a:
        # A directory where the temp file goes makes the compaction fail, as
        # a full or read-only disk would; the agent's next write is one.
        a.agent.state._writer._broken = True
        tmp = os.path.join(a.opts.state_dir, ".config.json.tmp")
        os.mkdir(tmp)
        try:
            with agent_client.AgentClient(a.opts.rpc_socket) as c:
                with pytest.raises(Exception) as err:
                    c.call("bdev_malloc_create", name="m0", num_blocks=8, block_size=512)
                assert err.value.code == -21  # EISDIR
                assert "could not save its state" in str(err.value)
        finally:
            os.rmdir(tmp)


def test_engine_options_reach_the_engine(short_tmp):
    """core_mask, max_delay_us, spin_us and no_pin configure the real Engine."""
    opts = fake_engine.agent_opts(short_tmp, core_mask="0x1", max_delay_us=250,
                                  spin_us=1, no_pin=True)
    eng = service.Agent(opts)._make_engine()
    assert (eng.core_mask, eng.max_delay_us, eng.spin_us, eng.no_pin) == (
        "0x1", 250, 1, True)
