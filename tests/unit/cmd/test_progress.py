"""Progress of the CLI's waits: a line on a terminal, nothing otherwise."""

import io
import json
import sys
import time

import pytest

from spdk_backend import exception
from spdk_backend.cmd import _common
from spdk_backend.cmd import _progress
from spdk_backend.cmd import attach
from spdk_backend.cmd import cli
from spdk_backend.cmd import upgrade
from spdk_backend.virt.libvirt import policy

ERASE = "\r\x1b[K"


class FakeTty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def fast(monkeypatch):
    """Show progress after 50 ms, every 50 ms (instead of every second)."""
    monkeypatch.setattr(_progress, "DELAY", 0.05)
    monkeypatch.setattr(_progress, "INTERVAL", 0.05)


def lines(text):
    """The progress lines written, in order."""
    return [part for part in text.split(ERASE) if part]


def test_format_line():
    assert _progress.format_line("X", 2.7) == "spdk-backend: waiting for X: 2s"
    assert _progress.format_line("X", 2.7, 30.0) == \
        "spdk-backend: waiting for X: 2s of at most 30s"
    assert _progress.format_line("X", 0.2, 0.5).endswith("0s of at most 0.5s")


def test_a_terminal_gets_one_rewritten_line_erased_at_the_end(fast):
    tty = FakeTty()
    with _progress.waiting("the guest", limit=3, stream=tty):
        time.sleep(0.4)
    out = tty.getvalue()
    assert out.startswith(ERASE) and out.endswith(ERASE)
    shown = lines(out)
    assert len(shown) >= 2
    assert set(shown) == {"spdk-backend: waiting for the guest: 0s of at most 3s"}
    assert "\n" not in out


def test_elapsed_seconds_count_up(fast, monkeypatch):
    class Clock:
        """A second passes every time the clock is read."""
        now = -1

        @classmethod
        def monotonic(cls):
            cls.now += 1
            return float(cls.now)

    monkeypatch.setattr(_progress, "time", Clock)
    tty = FakeTty()
    with _progress.waiting("x", stream=tty):
        time.sleep(0.3)
    shown = lines(tty.getvalue())
    assert shown[:3] == ["spdk-backend: waiting for x: %ds" % n for n in (1, 2, 3)]


def test_a_short_wait_shows_nothing():
    tty = FakeTty()
    with _progress.waiting("x", stream=tty):
        time.sleep(0.05)
    assert tty.getvalue() == ""


def test_not_a_terminal_gets_nothing(fast):
    stream = io.StringIO()
    with _progress.waiting("x", stream=stream):
        time.sleep(0.2)
    assert stream.getvalue() == ""


def test_default_stream_is_stderr_at_call_time(fast, monkeypatch):
    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    with _progress.waiting("x"):
        time.sleep(0.2)
    assert "waiting for x" in tty.getvalue()


def test_a_wait_inside_another_shows_only_the_outer(fast):
    tty = FakeTty()
    with _progress.waiting("outer", stream=tty):
        with _progress.waiting("inner", stream=tty):
            time.sleep(0.2)
        time.sleep(0.1)
    assert "outer" in tty.getvalue() and "inner" not in tty.getvalue()
    with _progress.waiting("again", stream=tty):      # and the next one shows again
        time.sleep(0.2)
    assert "again" in tty.getvalue()


def test_an_error_erases_the_line_and_goes_through(fast):
    tty = FakeTty()
    with pytest.raises(ValueError):
        with _progress.waiting("x", stream=tty):
            time.sleep(0.2)
            raise ValueError("boom")
    assert tty.getvalue().endswith(ERASE)


class FakeClient:
    """An agent client for the commands that cannot run on the fake agent."""

    def __init__(self, busy_for=0.0, upgrade_after=0.0):
        self.busy_for = busy_for          # from the first delete on
        self.busy_until = None
        self.upgrade_after = upgrade_after
        self.asked = None
        self.calls = []

    def __call__(self, *args, **kwargs):       # stands in for the client classes
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def close(self):
        pass

    def call(self, method, _params=None, **params):
        self.calls.append(method)
        if method == "vhost_get_controllers":
            return [{"ctrlr": _common.ctrlr_name("vm1", "vol1"), "socket": "/s/c",
                     "backend_specific": {"block": {"bdev": "vol1"}}}]
        if method == "vhost_delete_controller":
            if self.busy_until is None:
                self.busy_until = time.monotonic() + self.busy_for
            if time.monotonic() < self.busy_until:
                raise exception.AgentBusy(code=-16, reason="in use")
            return True
        if method == "framework_upgrade":
            self.asked = time.monotonic()
            return {"started_at": 1.0, "sessions": ["c"]}
        if method == "framework_get_process":
            if time.monotonic() - self.asked < self.upgrade_after:
                return {"pid": 1, "started_at": 1.0}
            return {"pid": 2, "started_at": 2.0, "version": "9.9",
                    "takeover": {"handed": ["c"], "adopted": ["c"], "lost": []}}
        raise AssertionError(method)


def test_controller_delete_waits_with_progress(fast, monkeypatch):
    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    client = FakeClient(busy_for=0.3)
    attach._delete_controller(client, "vm1.vol1.x", wait=5)
    assert "waiting for QEMU to close the socket of controller vm1.vol1.x: 0s of at " \
           "most 5s" in tty.getvalue()
    assert tty.getvalue().endswith(ERASE)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    attach._delete_controller(FakeClient(busy_for=0.3), "vm1.vol1.x", wait=5)
    assert sys.stderr.getvalue() == ""


class FakeHost:
    def close(self):
        pass


def run_cli(monkeypatch, capsys, stderr, argv):
    """cli.main with ``stderr`` as sys.stderr; (rc, stdout, what stderr got)."""
    monkeypatch.setattr(sys, "stderr", stderr)
    rc = cli.main(argv)
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    return rc, capsys.readouterr().out, stderr.getvalue()


@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_detach_wait_shows_progress_on_a_terminal_only(fast, monkeypatch, capsys,
                                                       json_flag):
    """``detach --wait``: the guest releasing the disk, then QEMU closing
    the controller's socket; stdout is the same either way."""
    def slow_detach(host, domain, **kwargs):
        assert kwargs["timeout"] == 5.0
        time.sleep(0.3)
        return policy.DiskInfo("vdb", "ua-x", "/s/c", 1, True, True)

    monkeypatch.setattr(policy, "detach_vhost_disk", slow_detach)
    monkeypatch.setattr(policy, "list_vhost_disks", lambda host, domain: [])
    monkeypatch.setattr(_common, "open_host", lambda args: FakeHost())
    argv = ["detach", "vm1", "vol1", "--wait", "5"] + json_flag
    outs = []
    for stderr in (FakeTty(), io.StringIO()):
        monkeypatch.setattr(cli, "ProgressClient", FakeClient(busy_for=0.3))
        rc, out, err = run_cli(monkeypatch, capsys, stderr, argv)
        assert rc == 0
        outs.append(out)
        if stderr.isatty():
            shown = lines(err)
            assert "spdk-backend: waiting for the guest of domain vm1 to release volume " \
                   "vol1: 0s of at most 5s" in shown
            assert any(line.startswith("spdk-backend: waiting for QEMU to close the socket "
                                       "of controller vm1.vol1.") for line in shown)
            assert err.endswith(ERASE)
        else:
            assert err == ""
    assert outs[0] == outs[1]
    if json_flag:
        assert json.loads(outs[0])["deleted_ctrlr"] is True
    else:
        assert outs[0].startswith("Detached volume vol1 (vdb) from domain vm1")


def test_upgrade_wait_shows_progress(fast, monkeypatch, capsys):
    monkeypatch.setattr(upgrade.agent_client, "AgentClient", None)
    outs = []
    for stderr in (FakeTty(), io.StringIO()):
        fake = FakeClient(upgrade_after=0.3)
        monkeypatch.setattr(cli, "ProgressClient", fake)
        monkeypatch.setattr(upgrade.agent_client, "AgentClient", fake)
        rc, out, err = run_cli(monkeypatch, capsys, stderr, ["upgrade", "--json"])
        assert rc == 0
        outs.append(json.loads(out))
        if stderr.isatty():
            assert "spdk-backend: waiting for the agent's new process to answer: 0s of " \
                   "at most 60s" in lines(err)
        else:
            assert err == ""
    assert outs[0] == outs[1] == {"pid": 2, "version": "9.9", "sessions": ["c"],
                                  "adopted": ["c"], "not_adopted": []}


def test_status_interval_shows_progress(fast, monkeypatch, capsys, agent):
    monkeypatch.setenv("SPDK_BACKEND_LIBVIRT_URI", "test:///default")
    argv = ["--rpc-socket", agent.opts.rpc_socket, "status", "--json", "--interval", "0.3"]
    rc, out, err = run_cli(monkeypatch, capsys, FakeTty(), argv)
    assert rc == 0 and json.loads(out)["interval"] == 0.3
    assert "spdk-backend: waiting for the second sample: 0s of at most 0.3s" in lines(err)
    rc, out2, err = run_cli(monkeypatch, capsys, io.StringIO(), argv)
    assert rc == 0 and err == ""
    assert json.loads(out2).keys() == json.loads(out).keys()


def test_waiting_for_the_agent_to_come_up(fast, monkeypatch, capsys, short_tmp):
    sock = short_tmp + "/none.sock"
    argv = ["--rpc-socket", sock, "--timeout", "0.3", "rpc", "spdk_get_version"]
    rc, _, err = run_cli(monkeypatch, capsys, FakeTty(), argv)
    assert rc == 2
    assert "spdk-backend: waiting for the agent at %s: 0s of at most 0.3s" % sock \
        in lines(err)
    # The line is gone before the error is printed.
    assert err.rstrip("\n").split(ERASE)[-1].startswith("spdk-backend: cannot reach")
    rc, _, err = run_cli(monkeypatch, capsys, io.StringIO(), argv)
    assert rc == 2 and err.startswith("spdk-backend: cannot reach")
