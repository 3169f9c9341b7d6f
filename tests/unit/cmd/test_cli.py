import json

import pytest

from spdk_backend.cmd import cli


def run(capsys, agent, *argv):
    rc = cli.main(["--rpc-socket", agent.opts.rpc_socket] + list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_command_groups_are_discovered():
    names = [m.__name__.rsplit(".", 1)[1] for m in cli.command_modules()]
    assert "rpc" in names and "status" in names and "cli" not in names


def test_rpc_key_value_and_json(capsys, agent):
    rc, out, _ = run(capsys, agent, "rpc", "bdev_malloc_create", "name=m0",
                     "num_blocks=64", "block_size=512")
    assert rc == 0 and out.strip() == "m0"
    rc, out, _ = run(capsys, agent, "rpc", "bdev_get_bdevs",
                     '{"name": "m0"}')
    assert rc == 0 and json.loads(out)[0]["num_blocks"] == 64
    rc, out, _ = run(capsys, agent, "--json", "rpc", "bdev_malloc_delete", "name=m0")
    assert rc == 0 and json.loads(out) is True


def test_rpc_errors_exit_nonzero_with_message(capsys, agent):
    rc, _, err = run(capsys, agent, "rpc", "bdev_malloc_create", "name=m0")
    assert rc == 1 and "num_blocks" in err
    rc, _, err = run(capsys, agent, "rpc", "bdev_malloc_create", "oops")
    assert rc == 1 and "key=value" in err


def test_unreachable_agent(capsys, short_tmp):
    rc = cli.main(["--rpc-socket", short_tmp + "/none.sock", "--timeout", "0.3", "rpc",
                   "spdk_get_version"])
    assert rc == 2
    assert "is spdk-backend-agent running" in capsys.readouterr().err


def test_status_tables_and_json(capsys, agent):
    run(capsys, agent, "rpc", "bdev_malloc_create", "name=m0", "num_blocks=2048",
        "block_size=512")
    run(capsys, agent, "rpc", "vhost_create_blk_controller", "ctrlr=vhost.0", "dev_name=m0")
    rc, out, _ = run(capsys, agent, "status", "--interval", "0.1")
    assert rc == 0
    for word in ("Reactors", "BUSY%", "Bdevs", "m0", "Controllers", "vhost.0", "IOPS"):
        assert word in out
    rc, out, _ = run(capsys, agent, "--json", "status", "--interval", "0.1")
    status = json.loads(out)
    assert status["reactors"][0]["busy_pct"] == 25.0  # the fake's 1:3 busy:idle
    (b,) = status["bdevs"]
    assert b["name"] == "m0" and b["size_mib"] == 1.0
    assert b["iops"] == pytest.approx(200, rel=0.01)
    (c,) = status["controllers"]
    assert c["ctrlr"] == "vhost.0" and c["connected"] is False
    assert c["iops"] > 0  # from completed_ios of two samples


@pytest.mark.parametrize("words,params", [
    (["a=1", "b=true", "c=x", 'd=["p","q"]', "e=null"],
     {"a": 1, "b": True, "c": "x", "d": ["p", "q"], "e": None}),
    (['{"a": {"b": 1}}'], {"a": {"b": 1}}),
    ([], {}),
])
def test_parse_params(words, params):
    from spdk_backend.cmd import rpc
    assert rpc.parse_params(words) == params
