"""Sizes, controller names and option handling shared by the CLI commands."""

import argparse
import re

import pytest

from spdk_backend import exception
from spdk_backend.cmd import _common
from spdk_backend.cmd import attach
from spdk_backend.cmd import cli


@pytest.mark.parametrize("text,size", [
    ("512", 512), ("4K", 4096), ("4k", 4096), ("256M", 256 << 20), ("10G", 10 << 30),
    ("10GiB", 10 << 30), ("10gb", 10 << 30), ("1T", 1 << 40), (" 2M ", 2 << 20),
    ("1.5K", 1536), ("0.5G", 512 << 20),
])
def test_parse_size(text, size):
    assert _common.parse_size(text) == size


@pytest.mark.parametrize("text,why", [
    ("", "is not a size"), ("10X", "is not a size"), ("-1M", "is not a size"),
    ("G", "is not a size"), ("1e3", "is not a size"), ("0", "more than zero"),
    ("0K", "more than zero"), ("1.1K", "whole number"), ("1000", "512-byte block"),
])
def test_parse_size_rejects(text, why):
    with pytest.raises(exception.InvalidInput, match=why):
        _common.parse_size(text)


def test_parse_size_block_size():
    assert _common.parse_size("8K", block_size=4096) == 8192
    with pytest.raises(exception.InvalidInput, match="4096-byte"):
        _common.parse_size("6K", block_size=4096)


def test_size_arg_is_an_argparse_error():
    with pytest.raises(argparse.ArgumentTypeError, match="such as 256M"):
        _common.size_arg("lots")


@pytest.mark.parametrize("size,text", [
    (512, "512B"), (1024, "1K"), (256 << 20, "256M"), (10 << 30, "10G"),
    (1536, "1.5K"), (3 << 40, "3T"), ((1 << 30) + (512 << 20), "1.5G"),
])
def test_format_size(size, text):
    assert _common.format_size(size) == text


_VALID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")   # the agent's ctrlr rule


def test_ctrlr_name_is_deterministic_valid_and_unique():
    a = _common.ctrlr_name("demo-guest", "demo-vol")
    assert a == _common.ctrlr_name("demo-guest", "demo-vol")
    assert a.startswith("demo-guest.demo-vol.") and len(a.rsplit(".", 1)[1]) == 8
    names = {
        _common.ctrlr_name(d, v)
        for d, v in [("vm 1", "v"), ("vm_1", "v"), ("vm/1", "v"), ("vm", "1.v"),
                     ("vm.1", "v"), ("-vm", "v"), ("é", "v"), ("x" * 300, "v"),
                     ("x" * 301, "v"), ("vm", "v"), ("v", "vm")]}
    assert len(names) == 11                     # sanitized alike, still distinct
    for name in names:
        assert _VALID.match(name), name
        assert len(name) <= 2 * 32 + 10
    # A domain name that sanitizes to something starting with '-' is made valid.
    assert _common.ctrlr_name("-x", "v").startswith("_-x.")


def test_volume_from_bdev():
    uring = {"name": "v", "module": "uring", "block_size": 512, "num_blocks": 2048,
             "driver_specific": {"uring": {"filename": "/d/v"}}}
    vol = _common.volume_from_bdev(uring)
    assert (vol.name, vol.backend, vol.size, vol.path) == ("v", "file", 1 << 20, "/d/v")
    malloc = {"name": "m", "module": "malloc", "block_size": 4096, "num_blocks": 4}
    assert _common.volume_from_bdev(malloc)[:4] == ("m", "malloc", 16384, None)
    assert _common.volume_from_bdev({"name": "n", "module": "null"}) is None


def _parse(*argv):
    return cli.build_parser().parse_args(list(argv))


def test_options_after_the_command_do_not_reset_the_global_ones():
    args = _parse("--json", "--rpc-socket", "/a.sock", "volume", "list")
    assert args.json and args.rpc_socket == "/a.sock"
    args = _parse("volume", "list", "--json", "--rpc-socket", "/b.sock")
    assert args.json and args.rpc_socket == "/b.sock"
    args = _parse("volume", "list")
    assert args.json is False


def test_attach_scopes_follow_virsh():
    def scopes(*flags):
        return attach._scopes(_parse("attach", "d", "v", *flags))
    assert scopes() == (None, None)             # whatever the domain allows
    assert scopes("--live") == (True, False)
    assert scopes("--config") == (False, True)
    assert scopes("--live", "--config") == (True, True)


def test_attach_libvirt_uri_from_environment(monkeypatch):
    monkeypatch.setenv(_common.ENV_LIBVIRT_URI, "test:///default")
    assert _parse("attach", "d", "v").libvirt_uri == "test:///default"
    assert _parse("attach", "d", "v", "--libvirt-uri", "qemu:///session").libvirt_uri \
        == "qemu:///session"


@pytest.mark.parametrize("bad", ["0", "-1", "x", "70000"])
def test_attach_queues_must_be_a_count(bad, capsys):
    with pytest.raises(SystemExit):
        _parse("attach", "d", "v", "--queues", bad)
    assert "queue count" in capsys.readouterr().err
