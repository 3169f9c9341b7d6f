import json
import os

import pytest

from spdk_backend.agent import state


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "config.json"
    state.atomic_write(str(path), b"one")
    state.atomic_write(str(path), b"two")
    assert path.read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["config.json"]


def test_load_missing_is_none(tmp_path):
    assert state.load_file(str(tmp_path / "config.json")) is None


@pytest.mark.parametrize("content,word", [
    (b'{"subsystems": [{"subsystem": "bdev", "config": [', "not valid JSON"),
    (b"\x00\x01garbage", "not valid JSON"),
    (b"[]", "subsystems"),
    (b'{"subsystems": [{"config": []}]}', "subsystem"),
    (b'{"subsystems": [{"subsystem": "bdev", "config": [{"params": {}}]}]}', "method"),
    (b'{"subsystems": [{"subsystem": "bdev", "config": {}}]}', "array"),
])
def test_corrupt_state_names_file(tmp_path, content, word):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(state.StateFileError) as err:
        state.load_file(str(path))
    assert str(path) in str(err.value) and word in str(err.value)
    assert "kept for inspection" in str(err.value)
    assert path.read_bytes() == content


def test_config_shape_and_order(tmp_path):
    st = state.AgentState(str(tmp_path))
    st.add_bdev("b1", "bdev_malloc_create", {"name": "b1", "num_blocks": 8,
                                             "block_size": 512})
    st.add_bdev("b0", "bdev_uring_create", {"name": "b0", "filename": "/f"})
    st.set_qos("b1", {"rw_ios_per_sec": 1000})
    st.add_ctrlr("c0", {"ctrlr": "c0", "dev_name": "b1"})
    st.set_coalescing("c0", 10, 100)
    st.save()
    saved = json.loads((tmp_path / "config.json").read_text())
    bdev, vhost = saved["subsystems"]
    assert bdev["subsystem"] == "bdev" and vhost["subsystem"] == "vhost_blk"
    assert [c["method"] for c in bdev["config"]] == [
        "bdev_malloc_create", "bdev_uring_create", "bdev_set_qos_limit",
        "bdev_wait_for_examine"]
    assert bdev["config"][2]["params"] == {"name": "b1", "rw_ios_per_sec": 1000}
    assert [c["method"] for c in vhost["config"]] == [
        "vhost_create_blk_controller", "vhost_controller_set_coalescing"]
    state.validate_config(saved)

    st.set_qos("b1", {"rw_ios_per_sec": 0})
    st.remove_bdev("b0")
    st.remove_ctrlr("c0")
    cfg = st.to_config()
    assert [c["method"] for c in cfg["subsystems"][0]["config"]] == [
        "bdev_malloc_create", "bdev_wait_for_examine"]
    assert cfg["subsystems"][1]["config"] == []


def test_pending_calls_are_saved_and_dropped_by_name(tmp_path):
    st = state.AgentState(str(tmp_path))
    call = {"method": "bdev_uring_create", "params": {"name": "u0", "filename": "/gone"}}
    st.add_pending("bdev", call)
    assert st.to_config()["subsystems"][0]["config"][0] == call
    assert st.to_config(include_pending=False)["subsystems"][0]["config"] == [
        {"method": "bdev_wait_for_examine"}]
    assert not st.drop_pending("other")
    assert st.drop_pending("u0")
    assert st.pending == []
