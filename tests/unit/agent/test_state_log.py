"""The state files: config.json plus its write-ahead log (state.py).

Every acknowledged change must come back from the files, whatever point a
crash stopped the writer at: a torn last append is ignored (it was never
acknowledged), a bad record with records after it stops the start, and a
compaction interrupted at any step leaves the old or the new state.
"""

import json
import os
import random

import pytest

from spdk_backend.agent import state as agent_state
from tests.support.state_changes import random_change


def _call(method, **params):
    return {"method": method, "params": params}


def _random_changes(st, rnd, steps, names, wait=False):
    """Random changes of every kind, each handed to the writer (``wait``:
    each written before the next)."""
    futs = []
    for step in range(steps):
        random_change(st, rnd, step, names)
        futs.append(st.save_later())
        if wait:
            futs[-1].result(10)
    return futs


def test_the_files_give_back_every_change(tmp_path):
    rnd = random.Random(11)
    st = agent_state.AgentState(str(tmp_path))
    st.save()
    names = []
    for _ in range(6):
        for fut in _random_changes(st, rnd, 80, names):
            fut.result(10)
        assert agent_state.load_file(st.path) == st.to_config()
    # Appends only: config.json is still the empty record of the start.
    assert st._writer.compactions == 1
    # A clean stop folds the log in: config.json alone is the record.
    st.close(compact=True)
    assert json.loads(open(st.path).read()) == st.to_config()
    assert agent_state.load_file(st.path) == st.to_config()


def test_compaction_when_the_log_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_state, "COMPACT_MIN_BYTES", 4096)
    rnd = random.Random(5)
    st = agent_state.AgentState(str(tmp_path))
    st.save()
    names = []
    for fut in _random_changes(st, rnd, 400, names, wait=True):
        fut.result(10)
    assert st._writer.compactions > 2
    # Past its limit, the log takes one more record at most before the next
    # change comes with the whole record.
    limit = max(4096, 2 * st._writer.base_bytes)
    assert os.path.getsize(os.path.join(str(tmp_path), agent_state.LOG_FILE)) < limit + 2048
    assert agent_state.load_file(st.path) == st.to_config()
    st.close()


def test_failed_replays_dropped_through_the_log(tmp_path):
    """Calls that failed to replay are saved first; their names created or
    deleted later drop them, through the log too."""
    st = agent_state.AgentState(str(tmp_path))
    st.add_pending("bdev", _call("bdev_uring_create", name="u0", filename="/gone"))
    st.add_pending("bdev", _call("bdev_uring_create", name="u1", filename="/gone"))
    st.add_pending("vhost_blk", _call("vhost_create_blk_controller", ctrlr="v0",
                                      dev_name="u0"))
    st.add_bdev("m0", "bdev_malloc_create", {"name": "m0", "num_blocks": 8})
    st.save()
    assert agent_state.load_file(st.path) == st.to_config()
    # u0 back (its file came back), v0 deleted by name, u1 stays pending.
    st.add_bdev("u0", "bdev_uring_create", {"name": "u0", "filename": "/back"})
    st.save_later().result(10)
    assert st.drop_pending("v0")
    st.save_later().result(10)
    st.add_ctrlr("v1", {"ctrlr": "v1", "dev_name": "u0"})
    st.save_later().result(10)
    assert agent_state.load_file(st.path) == st.to_config()
    st.close()


def _appended(tmp_path, steps=30):
    """An AgentState after a compaction and ``steps`` appends, one per change;
    [(log size, config)] after each."""
    st = agent_state.AgentState(str(tmp_path))
    st.save()
    wal = os.path.join(str(tmp_path), agent_state.LOG_FILE)
    history = [(os.path.getsize(wal), st.to_config())]
    for n in range(steps):
        st.add_bdev("b%d" % n, "bdev_null_create", {"name": "b%d" % n, "num_blocks": n + 1})
        st.save_later().result(10)
        history.append((os.path.getsize(wal), st.to_config()))
    st.close()
    return st, wal, history


def test_a_torn_last_append_is_ignored(tmp_path):
    st, wal, history = _appended(tmp_path)
    raw = open(wal, "rb").read()
    (before, config_before), (after, config_after) = history[-2], history[-1]
    assert after == len(raw)
    for keep in [before + 1, before + 4, before + 8, before + 9, after - 1]:
        # The crash left part of the last record (never acknowledged).
        with open(wal, "wb") as f:
            f.write(raw[:keep])
        assert agent_state.load_file(st.path) == config_before, keep
    # A crash after the size grew but before the data: zeros.
    with open(wal, "wb") as f:
        f.write(raw[:before] + b"\0" * (after - before))
    assert agent_state.load_file(st.path) == config_before
    # Its last bytes wrong: the checksum tells.
    with open(wal, "wb") as f:
        f.write(raw[:-1] + bytes([raw[-1] ^ 0xff]))
    assert agent_state.load_file(st.path) == config_before
    # Its header not written but its payload was (pages written back out of
    # order): no good record after it, so still the torn end.
    with open(wal, "wb") as f:
        f.write(raw[:before] + b"\0" * agent_state._RECORD.size
                + raw[before + agent_state._RECORD.size:])
    assert agent_state.load_file(st.path) == config_before
    with open(wal, "wb") as f:
        f.write(raw)
    assert agent_state.load_file(st.path) == config_after


def test_a_bad_record_before_others_stops_the_start(tmp_path):
    st, wal, history = _appended(tmp_path)
    raw = bytearray(open(wal, "rb").read())
    middle = history[10][0] + agent_state._RECORD.size + 3
    raw[middle] ^= 0xff
    with open(wal, "wb") as f:
        f.write(raw)
    with pytest.raises(agent_state.StateFileError) as err:
        agent_state.load_file(st.path)
    assert wal in str(err.value) and "bad checksum" in str(err.value)
    assert "kept for inspection" in str(err.value)
    assert open(wal, "rb").read() == bytes(raw)     # untouched


def test_a_bad_length_before_others_stops_the_start(tmp_path):
    """The checksum covers the length: a length that runs past the end of the
    file, with good records after it, is corruption, not a torn end."""
    st, wal, history = _appended(tmp_path)
    raw = bytearray(open(wal, "rb").read())
    at = history[10][0]
    raw[at:at + 4] = (0x7fffffff).to_bytes(4, "little")
    with open(wal, "wb") as f:
        f.write(raw)
    with pytest.raises(agent_state.StateFileError) as err:
        agent_state.load_file(st.path)
    assert "with records after it" in str(err.value)


def test_a_record_that_is_not_a_change_stops_the_start(tmp_path):
    st, wal, _ = _appended(tmp_path, steps=2)
    with open(wal, "ab") as f:
        f.write(agent_state.encode_record(b'[[["zz", "x"]]]'))
    with pytest.raises(agent_state.StateFileError) as err:
        agent_state.load_file(st.path)
    assert wal in str(err.value) and "not a change" in str(err.value)


def test_a_log_without_its_config_stops_the_start(tmp_path):
    st, wal, _ = _appended(tmp_path, steps=2)
    os.unlink(st.path)
    with pytest.raises(agent_state.StateFileError) as err:
        agent_state.load_file(st.path)
    assert wal in str(err.value)


def test_a_log_of_another_version_stops_the_start(tmp_path):
    st, wal, _ = _appended(tmp_path, steps=2)
    with open(wal, "wb") as f:
        f.write(agent_state.encode_record(b'{"wal": 99, "base": "x"}'))
        f.write(agent_state.encode_record(b"[]"))
    with pytest.raises(agent_state.StateFileError) as err:
        agent_state.load_file(st.path)
    assert "version 99" in str(err.value)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("at", ["config.json written", "config.json renamed",
                                "log written", "log renamed"])
def test_a_compaction_stopped_at_any_step_leaves_the_whole_state(tmp_path, monkeypatch, at):
    st, wal, history = _appended(tmp_path, steps=10)
    full = history[-1][1]
    st.add_bdev("late", "bdev_null_create", {"name": "late", "num_blocks": 1})
    expected_new = st.to_config()
    real_rename, real_fsync = os.rename, os.fsync
    renames = []

    def rename(src, dst):
        if at == "config.json written" and dst == st.path:
            raise _Crash()
        if at == "log written" and dst == wal:
            raise _Crash()
        real_rename(src, dst)
        renames.append(dst)
        if at == "config.json renamed" and dst == st.path:
            raise _Crash()
        if at == "log renamed" and dst == wal:
            raise _Crash()

    monkeypatch.setattr(agent_state.os, "rename", rename)
    monkeypatch.setattr(agent_state.os, "fsync", real_fsync)
    with pytest.raises(_Crash):
        st.save()
    monkeypatch.setattr(agent_state.os, "rename", real_rename)
    # What the files say now: the old state (the compaction had not made
    # config.json) or the new one (with "late", which it carried); never a mix.
    on_disk = agent_state.load_file(st.path)
    if at == "config.json written":
        assert on_disk == full
    else:
        assert on_disk == expected_new
    st.close()


def test_the_writer_never_appends_after_a_failed_write(tmp_path, monkeypatch):
    """A failed append (a full disk) is cut off; the next write is a
    compaction, so no record ever follows a torn one."""
    st, wal, history = _appended(tmp_path, steps=3)
    st.save()
    real = agent_state.os.fdatasync

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(agent_state.os, "fdatasync", full)
    st.add_bdev("x", "bdev_null_create", {"name": "x", "num_blocks": 1})
    with pytest.raises(OSError):
        st.save_later().result(10)
    assert agent_state.load_file(st.path) == history[-1][1]
    monkeypatch.setattr(agent_state.os, "fdatasync", real)
    compactions = st._writer.compactions
    st.add_bdev("y", "bdev_null_create", {"name": "y", "num_blocks": 1})
    st.save_later().result(10)
    assert st._writer.compactions == compactions + 1
    assert agent_state.load_file(st.path) == st.to_config()
    st.add_bdev("z", "bdev_null_create", {"name": "z", "num_blocks": 1})
    st.save_later().result(10)
    assert st._writer.compactions == compactions + 1     # appends again
    assert agent_state.load_file(st.path) == st.to_config()
    st.close()


def test_config_json_alone_is_the_state_after_a_clean_stop(tmp_path):
    st = agent_state.AgentState(str(tmp_path))
    st.save()
    st.add_bdev("b0", "bdev_null_create", {"name": "b0", "num_blocks": 1})
    st.save_later().result(10)
    assert json.loads(open(st.path).read()) != st.to_config()
    st.close(compact=True)
    saved = json.loads(open(st.path).read())
    assert saved == st.to_config()
    agent_state.validate_config(saved)
    # ... and the log says so: it holds no change.
    assert agent_state.read_records(open(os.path.join(str(tmp_path), agent_state.LOG_FILE),
                                         "rb").read())[1:] == []


def test_a_clean_stop_folds_in_even_the_smallest_change(tmp_path):
    """A delete is a record smaller than the log's header: folded in all the same."""
    st = agent_state.AgentState(str(tmp_path))
    st.add_bdev("vol1", "bdev_null_create", {"name": "vol1", "num_blocks": 1})
    st.save()
    st.remove_bdev("vol1")
    st.save_later().result(10)
    st.close(compact=True)
    assert json.loads(open(st.path).read()) == st.to_config()
    assert "vol1" not in open(st.path).read()

