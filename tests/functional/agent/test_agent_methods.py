"""Every agent method against a real agent process and the real engine."""

import os

import pytest

from spdk_backend import exception
from spdk_backend.agent import methods  # noqa: F401
from spdk_backend.agent import rpc

# A valid params set for every method that has required params (objects named
# here do not need to exist: validation comes first).
VALID = {
    "framework_get_config": {"name": "bdev"},
    "bdev_set_qos_limit": {"name": "b", "rw_ios_per_sec": 1000},
    "bdev_malloc_create": {"name": "b", "num_blocks": 8, "block_size": 512},
    "bdev_malloc_delete": {"name": "b"},
    "bdev_null_create": {"name": "b", "num_blocks": 8, "block_size": 512},
    "bdev_null_delete": {"name": "b"},
    "bdev_null_resize": {"name": "b", "new_size": 1},
    "bdev_uring_create": {"name": "b", "filename": "/nonexistent"},
    "bdev_uring_delete": {"name": "b"},
    "bdev_uring_rescan": {"name": "b"},
    "bdev_aio_create": {"name": "b", "filename": "/nonexistent"},
    "bdev_aio_delete": {"name": "b"},
    "bdev_aio_rescan": {"name": "b"},
    "bdev_rbd_register_cluster": {"name": "c"},
    "bdev_rbd_unregister_cluster": {"name": "c"},
    "bdev_rbd_create": {"pool_name": "p", "rbd_name": "i"},
    "bdev_rbd_delete": {"name": "b"},
    "bdev_rbd_resize": {"name": "b", "new_size": 1},
    "bdev_rbd_rescan": {"name": "b"},
    "vhost_create_blk_controller": {"ctrlr": "c", "dev_name": "b"},
    "vhost_delete_controller": {"ctrlr": "c"},
    "vhost_controller_set_coalescing": {"ctrlr": "c", "delay_base_us": 1,
                                        "iops_threshold": 1},
}

WRONG = {"a string": 12, "a non-empty string": 12, "a boolean": "yes", "an integer": "1",
         "an array of strings": "a"}


def wrong_value(param):
    for key, value in WRONG.items():
        if param.type.name.startswith(key):
            return value
    return "1"  # the unsigned integer types


ALL = sorted(rpc.REGISTRY)


def test_rpc_get_methods_lists_every_method(client):
    assert sorted(client.call("rpc_get_methods")) == ALL
    current = client.call("rpc_get_methods", current=True)
    assert "framework_start_init" not in current and "bdev_malloc_create" in current


@pytest.mark.parametrize("name", ALL)
def test_unknown_param_rejected(client, name):
    params = dict(VALID.get(name, {}), no_such_param=1)
    with pytest.raises(exception.AgentInvalidParams) as err:
        client.call(name, params)
    assert "no_such_param" in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_wrong_types_rejected(client, name):
    for param in rpc.REGISTRY[name].params:
        params = dict(VALID.get(name, {}))
        params[param.name] = wrong_value(param)
        with pytest.raises(exception.AgentInvalidParams) as err:
            client.call(name, params)
        assert param.name in str(err.value), (name, param.name)


@pytest.mark.parametrize("name", sorted(VALID))
def test_missing_required_rejected(client, name):
    required = [p.name for p in rpc.REGISTRY[name].params if p.required]
    for missing in required:
        params = {k: v for k, v in VALID[name].items() if k != missing}
        with pytest.raises(exception.AgentInvalidParams) as err:
            client.call(name, params)
        assert "missing required parameter %s" % missing in str(err.value)


def test_unknown_method(client):
    with pytest.raises(exception.AgentMethodNotFound) as err:
        client.call("bdev_lvol_create")
    assert "bdev_lvol_create" in str(err.value)


def test_version_and_subsystems(client):
    version = client.call("spdk_get_version")
    assert version["version"].startswith("spdk-backend v")
    assert set(version["fields"]) >= {"major", "minor", "patch", "suffix"}
    assert client.call("framework_get_subsystems") == [
        {"subsystem": "bdev", "depends_on": []},
        {"subsystem": "vhost_blk", "depends_on": ["bdev"]}]
    assert client.call("framework_wait_init") is True
    assert client.call("framework_start_init") is True
    with pytest.raises(exception.AgentInvalidParams) as err:
        client.call("framework_get_config", name="nvmf")
    assert "nvmf" in str(err.value)


def test_reactors(client):
    r = client.call("framework_get_reactors")
    assert r["tick_rate"] > 0 and r["pid"] > 0
    (reactor,) = r["reactors"]
    assert reactor["lcore"] == 0
    assert reactor["busy"] >= 0 and reactor["idle"] >= 0
    assert reactor["lw_threads"][0]["cpumask"] == "1"


def test_malloc_lifecycle_and_shapes(client):
    assert client.call("bdev_malloc_create", name="m0", num_blocks=2048,
                       block_size=4096) == "m0"
    (b,) = client.call("bdev_get_bdevs", name="m0")
    assert b["name"] == "m0" and b["block_size"] == 4096 and b["num_blocks"] == 2048
    assert b["product_name"] == "Malloc disk" and len(b["uuid"]) == 36
    assert b["claimed"] is False
    assert b["supported_io_types"]["read"] is True
    assert set(b["assigned_rate_limits"]) == {"rw_ios_per_sec", "rw_mbytes_per_sec",
                                              "r_mbytes_per_sec", "w_mbytes_per_sec"}
    auto = client.call("bdev_malloc_create", num_blocks=64, block_size=512)
    assert auto == "Malloc0"
    uuid = "0b1e4dd2-4b1e-4f6c-9d0a-3f1f2f6c9a11"
    client.call("bdev_malloc_create", name="m1", num_blocks=64, block_size=512, uuid=uuid)
    assert client.call("bdev_get_bdevs", name="m1")[0]["uuid"] == uuid
    with pytest.raises(exception.AgentAlreadyExists):
        client.call("bdev_malloc_create", name="m0", num_blocks=64, block_size=512)
    with pytest.raises(exception.AgentError) as err:
        client.call("bdev_malloc_create", name="bad", num_blocks=64, block_size=100)
    assert err.value.code == -22
    for name in ("m0", "m1", "Malloc0"):
        assert client.call("bdev_malloc_delete", name=name) is True
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_malloc_delete", name="m0")
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_get_bdevs", name="m0")
    assert client.call("bdev_get_bdevs") == []


def test_null_lifecycle_resize(client):
    client.call("bdev_null_create", name="n0", num_blocks=2048, block_size=512)
    assert client.call("bdev_null_resize", name="n0", new_size=4) is True
    assert client.call("bdev_get_bdevs", name="n0")[0]["num_blocks"] == 8192
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_malloc_delete", name="n0")  # wrong module
    assert client.call("bdev_null_delete", name="n0") is True


@pytest.mark.parametrize("kind", ["uring", "aio"])
def test_file_bdevs(client, base_dir, kind):
    path = os.path.join(base_dir, "disk.img")
    with open(path, "wb") as f:
        f.truncate(4 << 20)
    name = client.call("bdev_%s_create" % kind, name="f0", filename=path, block_size=512)
    assert name == "f0"
    assert client.call("bdev_get_bdevs", name="f0")[0]["num_blocks"] == 8192
    with open(path, "ab") as f:
        f.truncate(8 << 20)
    assert client.call("bdev_%s_rescan" % kind, name="f0") is True
    assert client.call("bdev_get_bdevs", name="f0")[0]["num_blocks"] == 16384
    cfg = client.call("framework_get_config", name="bdev")
    assert cfg[0]["method"] == "bdev_%s_create" % kind
    assert cfg[0]["params"]["filename"] == path
    assert client.call("bdev_%s_delete" % kind, name="f0") is True
    with pytest.raises(exception.AgentError) as err:
        client.call("bdev_%s_create" % kind, name="f1", filename=path + ".missing")
    assert err.value.code < 0 and "f1" in str(err.value) or "missing" in str(err.value)


def test_iostat_and_qos(client):
    client.call("bdev_malloc_create", name="m0", num_blocks=64, block_size=512)
    client.call("bdev_malloc_create", name="m1", num_blocks=64, block_size=512)
    stat = client.call("bdev_get_iostat")
    assert stat["tick_rate"] > 0 and {b["name"] for b in stat["bdevs"]} == {"m0", "m1"}
    for key in ("bytes_read", "num_read_ops", "bytes_written", "num_write_ops",
                "read_latency_ticks", "queue_depth", "io_time"):
        assert key in stat["bdevs"][0]
    assert [b["name"] for b in client.call("bdev_get_iostat", name="m1")["bdevs"]] == ["m1"]
    assert [b["name"] for b in client.call("bdev_get_iostat", names=["m0", "m1"])
            ["bdevs"]] == ["m0", "m1"]
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_get_iostat", name="zz")
    assert client.call("bdev_set_qos_limit", name="m0", rw_ios_per_sec=10000,
                       w_mbytes_per_sec=20) is True
    limits = client.call("bdev_get_bdevs", name="m0")[0]["assigned_rate_limits"]
    assert limits["rw_ios_per_sec"] == 10000 and limits["w_mbytes_per_sec"] == 20
    with pytest.raises(exception.AgentInvalidParams):
        client.call("bdev_set_qos_limit", name="m0")
    with pytest.raises(exception.AgentNotFound):
        client.call("bdev_set_qos_limit", name="zz", rw_ios_per_sec=1000)


def test_vhost_lifecycle(client, agent):
    client.call("bdev_malloc_create", name="m0", num_blocks=2048, block_size=512)
    assert client.call("vhost_create_blk_controller", ctrlr="vhost.0", dev_name="m0",
                       cpumask="0x1", readonly=True) is True
    (c,) = client.call("vhost_get_controllers")
    assert c["ctrlr"] == "vhost.0"
    assert c["socket"] == os.path.join(agent.vhost_socket_dir, "vhost.0")
    assert os.path.exists(c["socket"])
    assert c["backend_specific"]["block"] == {"readonly": True, "bdev": "m0"}
    assert c["connected"] is False
    with pytest.raises(exception.AgentAlreadyExists):
        client.call("vhost_create_blk_controller", ctrlr="vhost.0", dev_name="m0")
    with pytest.raises(exception.AgentNotFound):
        client.call("vhost_create_blk_controller", ctrlr="vhost.1", dev_name="nope")
    with pytest.raises(exception.AgentInvalidParams):
        client.call("vhost_create_blk_controller", ctrlr="a/b", dev_name="m0")
    assert client.call("vhost_controller_set_coalescing", ctrlr="vhost.0",
                       delay_base_us=50, iops_threshold=60000) is True
    (c,) = client.call("vhost_get_controllers", name="vhost.0")
    assert (c["delay_base_us"], c["iops_threshold"]) == (50, 60000)
    with pytest.raises(exception.AgentBusy) as err:
        client.call("bdev_malloc_delete", name="m0")
    assert "vhost.0" in str(err.value)
    assert client.call("vhost_delete_controller", ctrlr="vhost.0") is True
    assert not os.path.exists(c["socket"])
    with pytest.raises(exception.AgentNotFound):
        client.call("vhost_get_controllers", name="vhost.0")
    with pytest.raises(exception.AgentNotFound):
        client.call("vhost_delete_controller", ctrlr="vhost.0")
    assert client.call("bdev_malloc_delete", name="m0") is True
