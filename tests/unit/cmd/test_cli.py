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


def test_json_after_the_command_prints_the_same(capsys, agent, monkeypatch):
    """``rpc ... --json``, ``status --json``, ``volume list --json``: what the
    global ``--json`` prints."""
    monkeypatch.setenv("SPDK_BACKEND_LIBVIRT_URI", "test:///default")
    rc, out, _ = run(capsys, agent, "rpc", "bdev_malloc_create", "name=m0",
                     "num_blocks=64", "block_size=512", "--json")
    assert rc == 0 and out == '"m0"\n'             # JSON, not the bare string
    for words in (["rpc", "bdev_get_bdevs"], ["rpc", "bdev_get_bdevs", "name=m0"],
                  ["rpc", "spdk_get_version"], ["volume", "list"]):
        rc, after, err = run(capsys, agent, *(words + ["--json"]))
        assert rc == 0, err
        rc, before, err = run(capsys, agent, *(["--json"] + words))
        assert rc == 0, err
        assert after == before
        json.loads(after)

    def without_rates(text):
        status = json.loads(text)
        for row in status["bdevs"] + status["controllers"]:
            row.pop("iops")
        return status
    rc, after, _ = run(capsys, agent, "status", "--interval", "0", "--json")
    rc2, before, _ = run(capsys, agent, "--json", "status", "--interval", "0")
    assert rc == rc2 == 0
    assert without_rates(after) == without_rates(before)
    assert without_rates(after)["bdevs"][0]["name"] == "m0"


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


def test_status_tables_and_json(capsys, agent, monkeypatch):
    # libvirt's test driver: the stack section without a libvirtd.
    monkeypatch.setenv("SPDK_BACKEND_LIBVIRT_URI", "test:///default")
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
    import libvirt
    from spdk_backend.virt.libvirt import host
    stack = status["stack"]
    assert stack["uri"] == "test:///default" and stack["error"] is None
    assert stack["hypervisor"] == "TEST"
    assert stack["libvirt"] == host.format_version(host.split_version(libvirt.getVersion()))
    assert isinstance(stack["hotplug_reconnects"], bool)
    rc, out, _ = run(capsys, agent, "status", "--interval", "0")
    assert "Virtualization stack (test:///default)" in out
    assert "libvirt %s" % stack["libvirt"] in out


def test_status_without_libvirt(capsys, agent):
    """An agent host without libvirt still gets its status, and why not."""
    rc, out, _ = run(capsys, agent, "--json", "status", "--interval", "0",
                     "--libvirt-uri", "qemu+unix:///system?socket=/nonexistent/sock")
    assert rc == 0
    stack = json.loads(out)["stack"]
    assert stack["libvirt"] is None and "cannot connect" in stack["error"]


def test_attach_timeout_is_its_own_option(capsys):
    """attach --timeout bounds the live attach; the global --timeout (the
    agent's RPC) is another option and keeps its value."""
    args = cli.build_parser().parse_args(["--timeout", "5", "attach", "vm", "vol",
                                          "--timeout", "90"])
    assert args.timeout == 5.0 and args.attach_timeout == 90.0
    args = cli.build_parser().parse_args(["--timeout", "5", "attach", "vm", "vol"])
    assert args.timeout == 5.0 and args.attach_timeout == 60.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["attach", "vm", "vol", "--timeout", bad])
        assert "seconds above 0" in capsys.readouterr().err


@pytest.mark.parametrize("words,params", [
    (["a=1", "b=true", "c=x", 'd=["p","q"]', "e=null"],
     {"a": 1, "b": True, "c": "x", "d": ["p", "q"], "e": None}),
    (['{"a": {"b": 1}}'], {"a": {"b": 1}}),
    ([], {}),
])
def test_parse_params(words, params):
    from spdk_backend.cmd import rpc
    assert rpc.parse_params(words) == params
