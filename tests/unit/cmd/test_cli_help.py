"""Every command of ``spdk-backend``: its --help (an example, no ``%%``) and
``--json`` after its name as well as before it."""

import argparse
import re
import shlex

import pytest

from spdk_backend.cmd import cli


def walk(parser, path=()):
    """(path, parser) of ``parser`` and every sub-parser under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,))


def is_group(parser):
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


COMMANDS = [path for path, _ in walk(cli.build_parser()) if path]
LEAVES = [path for path, p in walk(cli.build_parser()) if path and not is_group(p)]

# What each command needs besides --json to parse.  A new command must be
# added here (test_every_command_is_covered).
SAMPLE_ARGS = {
    ("attach",): ["vm", "vol"],
    ("detach",): ["vm", "vol"],
    ("domain", "prepare"): ["vm"],
    ("domain", "disks"): ["vm"],
    ("prepare-incoming",): ["vm", "vol"],
    ("rpc",): ["bdev_get_bdevs", "name=x"],
    ("status",): ["--interval", "0"],
    ("upgrade",): [],
    ("volume", "create"): ["v", "--size", "1M"],
    ("volume", "list"): [],
    ("volume", "delete"): ["v"],
    ("volume", "resize"): ["v", "--size", "2M"],
}


def parse(argv):
    return vars(cli.build_parser().parse_args(argv))


def test_every_command_is_covered():
    assert sorted(SAMPLE_ARGS) == sorted(LEAVES)
    assert ("volume",) in COMMANDS and ("domain",) in COMMANDS


def help_text(capsys, path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(path) + ["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "top")
def test_help_has_no_escaped_percent(capsys, path):
    text = help_text(capsys, path)
    assert "%%" not in text
    assert "%(" not in text


def test_status_help_says_busy_percent(capsys):
    assert "busy %)" in " ".join(help_text(capsys, ("status",)).split())


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "top")
def test_help_ends_with_an_example(capsys, path):
    """An ``example:`` section, printed as written (not re-wrapped), whose
    command lines are this command's and parse."""
    text = help_text(capsys, path)
    m = re.search(r"\n\nexample:\n((?:  .*\n)+)$", text)
    assert m, text
    body = m.group(1).replace(" \\\n", " ")
    lines = [line.strip() for line in body.splitlines()]
    prefix = " ".join(("spdk-backend",) + path)
    assert all(line.startswith("spdk-backend ") for line in lines), lines
    if path:
        assert any(line == prefix or line.startswith(prefix + " ") for line in lines), lines
    for line in lines:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "spdk-backend"
        parse(argv[1:])                     # SystemExit if the example is wrong
    for raw in m.group(1).splitlines():
        assert len(raw) <= 79, raw


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_json_after_the_command(path):
    """``--json`` after the command (at the end, or right after its name)
    means what the global one means."""
    words = list(path) + SAMPLE_ARGS[path]
    before = parse(["--json"] + words)
    assert before["json"] is True
    assert parse(words + ["--json"]) == before
    assert parse(list(path) + ["--json"] + SAMPLE_ARGS[path]) == before
    assert parse(words)["json"] is False
    # --rpc-socket too, and a group takes them before its action.
    socket = ["--rpc-socket", "/x.sock"]
    assert parse(words + ["--json"] + socket) == dict(before, rpc_socket="/x.sock")
    if len(path) > 1:
        assert parse([path[0], "--json"] + words[1:]) == before


def test_rpc_json_after_key_value_params():
    args = parse(["rpc", "bdev_get_bdevs", "name=x", "--json"])
    assert args["params"] == ["name=x"] and args["json"] is True
