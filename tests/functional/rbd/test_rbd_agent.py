"""The bdev_rbd_* RPC methods of a real agent process against a real cluster."""

import os
import time

import pytest

from spdk_backend import exception
from spdk_backend.agent import state as agent_state
from tests.support import agent_proc


def saved_calls(agent):
    # config.json and its log: the agent folds the log in only at start and stop.
    config = agent_state.load_file(agent.state_file)
    (bdev,) = [s for s in config["subsystems"] if s["subsystem"] == "bdev"]
    return [c for c in bdev["config"] if c["method"].startswith("bdev_rbd")]


def test_rbd_methods_persist_and_come_back(base_dir, ceph_cluster, rbd_image):
    conf = ceph_cluster.conf
    with agent_proc.AgentProcess(base_dir) as agent, agent.client() as c:
        assert c.call("bdev_rbd_register_cluster", name="ceph1", user_id="admin",
                      config_file=conf, key_file=ceph_cluster.keyring) == "ceph1"
        assert c.call("bdev_rbd_create", name="vol1", pool_name="rbd", rbd_name=rbd_image,
                      block_size=4096, cluster_name="ceph1") == "vol1"
        # SPDK's default name, its own connection from config pairs.
        auto = c.call("bdev_rbd_create", pool_name="rbd", rbd_name=rbd_image,
                      block_size=512, user_id="admin", config=ceph_cluster.client_config(),
                      read_only=True)
        assert auto == "Ceph0"
        (b,) = c.call("bdev_get_bdevs", name="vol1")
        assert b["module"] == "rbd" and b["num_blocks"] == 16384 and b["block_size"] == 4096
        uuid = b["uuid"]
        info = c.call("bdev_rbd_get_clusters_info", name="ceph1")
        assert info["cluster_name"] == "ceph1" and info["config_file"] == conf
        assert info["bdevs"] == 1
        assert c.call("bdev_rbd_get_clusters_info") == [info]
        with pytest.raises(exception.AgentBusy):
            c.call("bdev_rbd_unregister_cluster", name="ceph1")

        assert c.call("bdev_rbd_resize", name="vol1", new_size=80) is True
        assert c.call("bdev_get_bdevs", name="vol1")[0]["num_blocks"] == 80 * 256
        # librbd does not watch the header of a read-only image: rescan it.
        assert c.call("bdev_rbd_rescan", name="Ceph0") is True
        assert c.call("bdev_get_bdevs", name="Ceph0")[0]["num_blocks"] == 80 * 2048

        calls = saved_calls(agent)
        assert [x["method"] for x in calls] == [
            "bdev_rbd_register_cluster", "bdev_rbd_create", "bdev_rbd_create"]
        assert calls[0]["params"] == {"name": "ceph1", "user_id": "admin",
                                      "config_file": conf, "key_file": ceph_cluster.keyring}
        assert calls[1]["params"] == {"name": "vol1", "pool_name": "rbd",
                                      "rbd_name": rbd_image, "block_size": 4096,
                                      "cluster_name": "ceph1", "uuid": uuid}
        assert calls[2]["params"]["read_only"] is True
        assert calls[2]["params"]["config"]["mon_host"] == ceph_cluster.mon_host
        assert c.call("framework_get_config", name="bdev")[:3] == calls

    # A restart replays the cluster before the bdevs that name it.
    with agent_proc.AgentProcess(base_dir) as agent, agent.client() as c:
        (b,) = c.call("bdev_get_bdevs", name="vol1")
        assert b["uuid"] == uuid and b["num_blocks"] == 80 * 256
        assert c.call("bdev_get_bdevs", name="Ceph0")[0]["module"] == "rbd"
        assert c.call("bdev_rbd_get_clusters_info", name="ceph1")["bdevs"] == 1
        assert "could not restore" not in agent.log()

        assert c.call("bdev_rbd_delete", name="vol1") is True
        assert c.call("bdev_rbd_delete", name="Ceph0") is True
        with pytest.raises(exception.AgentNotFound):
            c.call("bdev_rbd_delete", name="vol1")
        assert c.call("bdev_rbd_unregister_cluster", name="ceph1") is True
        assert c.call("bdev_rbd_get_clusters_info") == []
        assert saved_calls(agent) == []


def test_rbd_bad_params_rejected(base_dir, ceph_cluster, rbd_image):
    with agent_proc.AgentProcess(base_dir) as agent, agent.client() as c:
        for params, words in (
                ({"pool_name": "rbd", "rbd_name": rbd_image, "block_size": 1000},
                 ["block_size", "power of two"]),
                ({"pool_name": "rbd", "rbd_name": rbd_image, "config": {"a": 1}},
                 ["config", "string"]),
                ({"pool_name": "rbd", "rbd_name": rbd_image, "config": "mon_host=x"},
                 ["config", "object"]),
                ({"rbd_name": rbd_image}, ["missing", "pool_name"])):
            with pytest.raises(exception.AgentInvalidParams) as err:
                c.call("bdev_rbd_create", params)
            for w in words:
                assert w in str(err.value), (params, str(err.value))
        with pytest.raises(exception.AgentInvalidParams):
            c.call("bdev_rbd_register_cluster", name="x", core_mask="0x1")
        with pytest.raises(exception.AgentNotFound):
            c.call("bdev_rbd_create", name="v", pool_name="rbd", rbd_name="missing-image",
                   config_file=ceph_cluster.conf)
        with pytest.raises(exception.AgentNotFound):
            c.call("bdev_rbd_get_clusters_info", name="nope")
        with pytest.raises(exception.AgentNotFound):
            c.call("bdev_rbd_unregister_cluster", name="nope")
        assert c.call("bdev_get_bdevs") == []
        assert saved_calls(agent) == []
        assert os.path.exists(agent.state_file)
