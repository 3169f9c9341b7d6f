"""The state file's group commit (state.StateWriter) and cached rendering."""

import errno
import json
import random
import threading

import pytest

from spdk_backend.agent import state as agent_state
from tests.support.state_changes import random_change


def test_cached_render_is_the_rendered_config(tmp_path):
    """AgentState.render() (cached lines) gives the bytes render(to_config()) gives."""
    rnd = random.Random(7)
    st = agent_state.AgentState(str(tmp_path))
    names = []
    for step in range(600):
        random_change(st, rnd, step, names, pending=True)
        if step % 50 == 0:
            assert st.render() == agent_state.render(st.to_config())
    assert st.render() == agent_state.render(st.to_config())
    json.loads(st.render())


class _GatedWrites:
    """atomic_write that waits for a go-ahead and records what it wrote."""

    def __init__(self, monkeypatch, fail=None):
        self.go = threading.Event()
        self.started = threading.Event()
        self.written = []
        self.fail = fail
        real = agent_state.atomic_write

        def write(path, data):
            self.started.set()
            assert self.go.wait(10)
            if self.fail is not None:
                raise self.fail
            real(path, data)
            self.written.append(data)
        monkeypatch.setattr(agent_state, "atomic_write", write)


def test_changes_during_a_write_share_the_next(tmp_path, monkeypatch):
    gate = _GatedWrites(monkeypatch)
    w = agent_state.StateWriter(str(tmp_path / "config.json"))
    first = w.submit(b"1")
    assert gate.started.wait(10)
    # While the first write waits, nine more snapshots come in.
    rest = [w.submit(str(n).encode()) for n in range(2, 11)]
    assert not first.done() and not any(f.done() for f in rest)
    gate.go.set()
    for fut in [first] + rest:
        assert fut.result(10) is None
    w.flush()
    # Two writes for ten changes: the first, then the newest of the others.
    assert gate.written == [b"1", b"10"]
    assert w.writes == 2
    assert (tmp_path / "config.json").read_bytes() == b"10"
    w.close()


def test_a_failed_write_fails_its_changes_and_the_next_may_succeed(tmp_path, monkeypatch):
    gate = _GatedWrites(monkeypatch, fail=OSError(errno.ENOSPC, "No space left on device"))
    w = agent_state.StateWriter(str(tmp_path / "config.json"))
    fut = w.submit(b"a")
    gate.go.set()
    with pytest.raises(OSError) as err:
        fut.result(10)
    assert err.value.errno == errno.ENOSPC
    gate.fail = None
    assert w.submit(b"b").result(10) is None
    assert (tmp_path / "config.json").read_bytes() == b"b"
    w.close()


def test_close_writes_what_is_queued_and_a_later_submit_works(tmp_path, monkeypatch):
    gate = _GatedWrites(monkeypatch)
    w = agent_state.StateWriter(str(tmp_path / "config.json"))
    futs = [w.submit(b"x"), w.submit(b"y")]
    gate.go.set()
    w.close()
    assert all(f.done() for f in futs)
    assert (tmp_path / "config.json").read_bytes() == b"y"
    # An agent whose upgrade failed serves on: the writer starts again.
    assert w.submit(b"z").result(10) is None
    assert (tmp_path / "config.json").read_bytes() == b"z"
    w.close()


def test_save_later_renders_now_and_writes_in_order(tmp_path):
    st = agent_state.AgentState(str(tmp_path))
    futs = []
    for n in range(20):
        st.add_bdev("b%d" % n, "bdev_null_create", {"name": "b%d" % n, "num_blocks": 8,
                                                    "block_size": 512})
        futs.append(st.save_later())
    for fut in futs:
        fut.result(10)
    on_disk = agent_state.load_file(st.path)
    assert on_disk == st.to_config()
    assert 1 <= st.writes <= 20
    st.close()


def test_no_state_dir_no_writer():
    st = agent_state.AgentState(None)
    st.add_bdev("b", "bdev_null_create", {"name": "b"})
    assert st.save_later() is None
    st.flush()
    st.close()


def test_a_cancelled_waiter_does_not_stop_the_writer(tmp_path, monkeypatch):
    gate = _GatedWrites(monkeypatch)
    w = agent_state.StateWriter(str(tmp_path / "config.json"))
    first = w.submit(b"1")
    assert gate.started.wait(10)
    gone = w.submit(b"2")
    stays = w.submit(b"3")
    gone.cancel()       # its client went away
    gate.go.set()
    assert stays.result(10) is None and first.result(10) is None
    # The writer lives on: later changes are written and flush returns.
    assert w.submit(b"4").result(10) is None
    w.flush()
    assert (tmp_path / "config.json").read_bytes() == b"4"
    w.close()


def test_any_failure_reaches_the_changes_and_the_writer_lives_on(tmp_path, monkeypatch):
    gate = _GatedWrites(monkeypatch, fail=RuntimeError("bug"))
    w = agent_state.StateWriter(str(tmp_path / "config.json"))
    fut = w.submit(b"a")
    gate.go.set()
    with pytest.raises(RuntimeError):
        fut.result(10)
    w.flush()
    gate.fail = None
    assert w.submit(b"b").result(10) is None
    w.close()


def test_the_reply_waits_for_the_write_and_reads_for_earlier_writes(tmp_path, monkeypatch):
    """Through the dispatcher: a change is answered only after its write; a
    read that may show it only after that write too."""
    import asyncio
    import concurrent.futures

    from spdk_backend.agent import dispatcher as agent_dispatcher
    import spdk_backend.agent.methods  # noqa: F401  (registers the methods)
    from tests.support.fake_engine import FakeEngine

    gate = _GatedWrites(monkeypatch)
    st = agent_state.AgentState(str(tmp_path))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    disp = agent_dispatcher.Dispatcher(agent_dispatcher.Context(FakeEngine(), st), pool)

    async def scenario():
        change = asyncio.ensure_future(disp.call(
            "bdev_null_create", {"name": "n0", "num_blocks": 8, "block_size": 512}))
        await asyncio.get_running_loop().run_in_executor(None, gate.started.wait, 10)
        read = asyncio.ensure_future(disp.call("bdev_get_bdevs", {"name": "n0"}))
        await asyncio.sleep(0.2)
        assert not change.done() and not read.done()
        gate.go.set()
        assert await asyncio.wait_for(change, 10) == "n0"
        assert (await asyncio.wait_for(read, 10))[0]["name"] == "n0"

    try:
        asyncio.run(scenario())
    finally:
        gate.go.set()
        st.close()
        pool.shutdown()
    assert agent_state.load_file(st.path) == st.to_config()
