"""SPDK's own client (``spdk-rpc``, i.e. scripts/rpc.py) against the agent."""

import json
import os
import subprocess

import pytest

from spdk_backend.agent import state as agent_state


def spdk_rpc(agent, *args, stdin=None):
    r = subprocess.run(["spdk-rpc", "-s", agent.rpc_socket, "-t", "30"] + list(args),
                       input=stdin, capture_output=True, text=True, timeout=60)
    return r


def ok(agent, *args, stdin=None):
    r = spdk_rpc(agent, *args, stdin=stdin)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def test_every_method_through_spdk_rpc(agent, base_dir):
    img = os.path.join(base_dir, "disk.img")
    img2 = os.path.join(base_dir, "disk2.img")
    for path in (img, img2):
        with open(path, "wb") as f:
            f.truncate(4 << 20)
    assert "bdev_malloc_create" in json.loads(ok(agent, "rpc_get_methods"))
    assert json.loads(ok(agent, "spdk_get_version"))["version"]
    assert json.loads(ok(agent, "framework_get_reactors"))["reactors"]
    assert json.loads(ok(agent, "framework_get_subsystems"))[0]["subsystem"] == "bdev"
    ok(agent, "framework_wait_init")
    assert ok(agent, "bdev_malloc_create", "-b", "m0", "64", "512").strip() == "m0"
    assert ok(agent, "bdev_malloc_create", "64", "4096").strip() == "Malloc0"
    assert ok(agent, "bdev_null_create", "n0", "64", "512").strip() == "n0"
    ok(agent, "bdev_null_resize", "n0", "128")
    assert ok(agent, "bdev_uring_create", img, "u0", "512").strip() == "u0"
    ok(agent, "bdev_uring_rescan", "u0")
    assert ok(agent, "bdev_aio_create", img2, "a0", "4096").strip() == "a0"
    ok(agent, "bdev_aio_rescan", "a0")
    bdevs = json.loads(ok(agent, "bdev_get_bdevs"))
    assert {b["name"] for b in bdevs} == {"m0", "Malloc0", "n0", "u0", "a0"}
    assert json.loads(ok(agent, "bdev_get_bdevs", "-b", "n0"))[0]["num_blocks"] == 262144
    assert json.loads(ok(agent, "bdev_get_iostat"))["bdevs"]
    ok(agent, "bdev_set_qos_limit", "m0", "--rw-ios-per-sec", "10000")
    ok(agent, "vhost_create_blk_controller", "vhost.0", "m0")
    ok(agent, "vhost_create_blk_controller", "-r", "--cpumask", "0x1", "vhost.1", "n0")
    ok(agent, "vhost_controller_set_coalescing", "vhost.0", "10", "1000")
    ctrlrs = json.loads(ok(agent, "vhost_get_controllers"))
    assert [c["ctrlr"] for c in ctrlrs] == ["vhost.0", "vhost.1"]
    assert json.loads(ok(agent, "vhost_get_controllers", "-n", "vhost.1"))[0][
        "backend_specific"]["block"]["readonly"] is True
    ok(agent, "vhost_delete_controller", "vhost.1")
    for cmd, name in (("bdev_malloc_delete", "Malloc0"), ("bdev_null_delete", "n0"),
                      ("bdev_uring_delete", "u0"), ("bdev_aio_delete", "a0")):
        ok(agent, cmd, name)
    assert [b["name"] for b in json.loads(ok(agent, "bdev_get_bdevs"))] == ["m0"]


def test_errors_through_spdk_rpc(agent):
    r = spdk_rpc(agent, "bdev_malloc_delete", "nope")
    assert r.returncode == 1 and '"code": -19' in r.stdout
    r = spdk_rpc(agent, "bdev_malloc_create", "-b", "x", "64", "512", "--md-size", "8")
    assert r.returncode == 1 and "-32602" in r.stdout and "md_size" in r.stdout
    r = spdk_rpc(agent, "bdev_lvol_get_lvstores")
    assert r.returncode == 1 and "-32601" in r.stdout


def test_save_config_load_config_round_trip(agent, base_dir):
    from tests.support import agent_proc
    img = os.path.join(base_dir, "disk.img")
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    ok(agent, "bdev_malloc_create", "-b", "m0", "16", "512")
    ok(agent, "bdev_uring_create", img, "u0")
    ok(agent, "bdev_set_qos_limit", "u0", "--rw-mbytes-per-sec", "100")
    ok(agent, "vhost_create_blk_controller", "vhost.0", "m0")
    ok(agent, "vhost_controller_set_coalescing", "vhost.0", "10", "1000")
    saved = ok(agent, "save_config")
    config = json.loads(saved)
    assert [s["subsystem"] for s in config["subsystems"]] == ["bdev", "vhost_blk"]
    # and the state file of the agent is the same document
    # (config.json and its log: docs/agent.md, "Persistence")
    assert agent_state.load_file(agent.state_file) == json.loads(saved)
    # The second agent serves the file next: it is locked while served.
    ok(agent, "bdev_uring_delete", "u0")

    other_dir = os.path.join(base_dir, "second")
    os.mkdir(other_dir)
    # An SPDK config may name subsystems the agent lacks; empty ones are fine.
    config["subsystems"].insert(0, {"subsystem": "accel", "config": []})
    with agent_proc.AgentProcess(other_dir) as second:
        ok(second, "load_config", stdin=json.dumps(config))
        again = json.loads(ok(second, "save_config"))
        bdevs = json.loads(ok(second, "bdev_get_bdevs"))
    assert again == json.loads(saved)
    assert {b["name"]: b["assigned_rate_limits"]["rw_mbytes_per_sec"] for b in bdevs} == {
        "m0": 0, "u0": 100}


def test_load_config_with_unknown_method_is_refused(agent):
    config = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_nvme_attach_controller", "params": {"name": "x"}}]}]}
    r = spdk_rpc(agent, "load_config", stdin=json.dumps(config))
    assert r.returncode != 0 and "Unknown method" in (r.stdout + r.stderr)


@pytest.mark.parametrize("subsystem", ["bdev", "vhost_blk"])
def test_save_subsystem_config(agent, subsystem):
    ok(agent, "bdev_malloc_create", "-b", "m0", "16", "512")
    out = json.loads(ok(agent, "save_subsystem_config", "-n", subsystem))
    assert out["subsystem"] == subsystem and isinstance(out["config"], list)
