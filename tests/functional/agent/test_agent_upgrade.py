"""The agent hands itself over to a new process without disconnecting its
front-ends.

A real agent (tests/support/agent_proc.py) and the C initiator playing
QEMU's part (randrw with --verify: it exits non-zero on any I/O error,
verify mismatch or disconnect).  ``framework_upgrade`` and SIGHUP start a
successor and hand it every session, the controllers' listening sockets
and the RPC socket (agent/handoff.py, native/lib/vhost/vhost_handoff.c);
the old process exits.  A handed-over controller that the new process
does not re-create loses its front-end and is reported; a live migration
refuses the upgrade; a successor that cannot start, reads another handoff
version, or dies before it took the handoff leaves the agent serving in
the old process.

Kept light (short runs, qd 8, small ranges): the machine has 2 cores and
may run other tests meanwhile.
"""

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types

import pytest

from spdk_backend.agent import client as agent_client
from spdk_backend.agent import handoff as agent_handoff
from spdk_backend.agent import state as agent_state
from tests.support import agent_proc
from tests.support import fake_engine
from tests.support.initiator import BackgroundInitiator, make_uring_controller
from tests.support.polling import wait_for

pytestmark = pytest.mark.timeout(180)

MB = 1 << 20
IMAGE_BYTES = 64 * MB
# --verify writes its range first and reads it all back at the end: 8 MiB.
WORKLOAD = ["--rw", "randrw", "--verify", "--qd", "8", "--interrupt", "--json",
            "--size-limit", "8M", "--io-timeout", "20", "--timeout-ms", "20000"]

# The front-end the new process does not take over: its requests stop
# completing (the initiator does not watch its socket during a run).
GONE_WORKLOAD = ["--rw", "randrw", "--verify", "--qd", "8", "--interrupt", "--json",
                 "--size-limit", "8M", "--io-timeout", "3", "--timeout-ms", "20000",
                 "--time", "30"]


def make_controller(c, base_dir, name, max_queues=2):
    return make_uring_controller(c, base_dir, name, max_queues, IMAGE_BYTES)


def call(agent, method, timeout=30, **params):
    with agent_client.AgentClient(agent.rpc_socket, timeout=timeout, connect_timeout=10) as c:
        return c.call(method, **params)


def controller(agent, name):
    (info,) = call(agent, "vhost_get_controllers", name=name)
    return info


def wait_io(agent, name, timeout=30):
    """Until the front-end of `name` is connected and the verify run's
    initial fill is over (reads are being done: the randrw phase)."""
    def reading():
        stats = call(agent, "bdev_get_iostat", name="u-" + name)["bdevs"][0]
        return controller(agent, name)["connected"] and stats["num_read_ops"] > 0
    wait_for(reading, timeout, "I/O on %s" % name)


def test_framework_upgrade_keeps_a_two_queue_front_end(agent, base_dir, initiator):
    with agent.client() as c:
        sock = make_controller(c, base_dir, "vhost.0")
        before = c.call("framework_get_process")
    assert before["takeover"] is None
    old = agent.proc
    with BackgroundInitiator(initiator, sock, *WORKLOAD, "--queues", "2", "--time", "6") as ini:
        wait_io(agent, "vhost.0")
        asked = call(agent, "framework_upgrade")
        assert asked["pid"] == before["pid"] == old.pid
        assert asked["started_at"] == before["started_at"]
        assert asked["sessions"] == ["vhost.0"]
        after = agent.wait_upgraded(before["started_at"])
        assert ini.proc.poll() is None, "the workload ended before the upgrade"
        # "adopted" holds while the adopted session lasts.
        info = controller(agent, "vhost.0")
        assert info["connected"] and info["adopted"] is True, info
        assert ini.wait(60) == 0, ini.describe() + agent.log()
    res = ini.result()
    assert res is not None, ini.describe()
    assert res["errors"] == 0 and res["verify_mismatches"] == 0 and not res["fatal"], res
    assert res["main"]["verified"] > 0 and res["readback"]["verified"] == res["blocks"], res
    # A new process took over; the old one exited cleanly once it had handed over.
    assert after["pid"] == agent.proc.pid != old.pid and agent.proc.poll() is None
    assert old.wait(30) == 0
    assert after["takeover"]["source"] == "upgrade"
    assert after["takeover"]["from_pid"] == before["pid"]
    assert after["takeover"]["handed"] == ["vhost.0"]
    assert after["takeover"]["adopted"] == ["vhost.0"]
    assert after["takeover"]["lost"] == []
    log = agent.log()
    assert "vhost vhost.0: session taken over from the previous process (2 rings resumed)" \
        in log, log
    assert "took over 1 session(s) without a disconnect: vhost.0" in log


class _Prober(threading.Thread):
    """Connects to (and closes) a unix socket every 2 ms, once each, never
    retrying: a listener closed at any moment shows as a refusal
    (ECONNREFUSED, or ENOENT once unlinked).  EAGAIN is a listener whose
    backlog is full (nobody accepts while the agent changes process): alive."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.attempts = []           # wall-clock times the listener was there
        self.refused = []

    def run(self):
        while not self.stop.is_set():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(5)
                s.connect(self.path)
                self.attempts.append(time.time())
            except BlockingIOError:
                self.attempts.append(time.time())
            except OSError as exc:
                self.refused.append((time.time(), exc))
            finally:
                s.close()
            time.sleep(0.002)


def _log_times(log, pattern):
    """Wall-clock times of the log lines matching pattern (C or Python stamps)."""
    out = []
    for line in log.splitlines():
        if re.search(pattern, line):
            m = re.match(r"\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[.,](\d+)", line)
            if m:
                stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
                out.append(stamp.timestamp() + float("0." + m.group(2)))
    return out


def test_sighup_and_connects_during_the_upgrade_window(agent, base_dir, initiator):
    with agent.client() as c:
        busy = make_controller(c, base_dir, "busy", max_queues=1)
        idle = make_controller(c, base_dir, "idle", max_queues=1)
        # Only connected to (and closed) during the upgrade: a listener test.
        probe_sock = make_controller(c, base_dir, "probe", max_queues=1)
        before = c.call("framework_get_process")
    prober = _Prober(probe_sock)
    with BackgroundInitiator(initiator, busy, *WORKLOAD, "--time", "5") as running:
        wait_io(agent, "busy")
        assert not controller(agent, "idle")["connected"]
        os.kill(agent.proc.pid, signal.SIGHUP)
        # The old process still serves while its successor starts.
        wait_for(lambda: "waiting until it is ready" in agent.log(), 30, "the successor")
        prober.start()
        # A front-end that connects while the agent changes process.
        with BackgroundInitiator(initiator, idle, *WORKLOAD, "--time", "1") as late:
            after = agent.wait_upgraded(before["started_at"])
            assert late.wait(60) == 0, late.describe() + agent.log()
        time.sleep(0.1)
        prober.stop.set()
        prober.join(10)
        assert running.wait(60) == 0, running.describe() + agent.log()
    log = agent.log()
    # Never refused, and connected to while no process served it: after the
    # old process let go of the listener, before the new one was ready.
    assert prober.refused == [], prober.refused
    # The export lets go of every listener at once (busy's line).
    (exported,) = _log_times(log, r"vhost busy: session handed over")
    (ready,) = _log_times(log, r"ready \(pid %d\)" % after["pid"])
    assert any(exported <= t <= ready for t in prober.attempts), (exported, ready)
    assert after["pid"] == agent.proc.pid != before["pid"]
    # The late front-end (or a probe) may have connected before the export:
    # then its session was handed over too.  A probe closes at once, so its
    # adopted session may already be gone (no longer adopted) when the new
    # process lists them: every other handed session is adopted.
    took = after["takeover"]
    assert "busy" in took["handed"] and set(took["adopted"]) <= set(took["handed"])
    assert set(took["handed"]) - {"probe"} <= set(took["adopted"]), took
    assert took["lost"] == []
    assert "vhost busy: session taken over from the previous process (1 rings resumed)" \
        in agent.log()
    # A new front-end on controllers that had none at the upgrade.
    for sock in (idle, probe_sock):
        res = subprocess.run([str(initiator), "--socket", sock] + WORKLOAD + ["--time", "1"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
    assert "front-end refused" not in agent.log(), agent.log()


def _rpc_reply(sock, timeout):
    """The first JSON object read from `sock`."""
    sock.settimeout(timeout)
    decoder = json.JSONDecoder()
    buf = ""
    while True:
        chunk = sock.recv(1 << 16)
        assert chunk, "the connection was closed before a reply (got %r)" % buf
        buf += chunk.decode()
        try:
            return decoder.raw_decode(buf.lstrip())[0]
        except ValueError:
            continue


def test_rpc_socket_is_handed_over(agent):
    before = call(agent, "framework_get_process")
    inode = os.stat(agent.rpc_socket).st_ino
    ready_lines = agent.log().count("ready (pid")
    asked = call(agent, "framework_upgrade")
    assert asked["started_at"] == before["started_at"]
    # The old process stops serving: from here on, no process accepts
    # until the new one serves the handed-over socket.
    wait_for(lambda: "upgrade asked" in agent.log(), 10,
             "the agent to stop serving")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(agent.rpc_socket)      # once, no retry: not refused
        in_window = agent.log().count("ready (pid") == ready_lines
        sock.sendall(json.dumps({"jsonrpc": "2.0", "method": "framework_get_process",
                                 "id": 7}).encode())
        reply = _rpc_reply(sock, 60)
    finally:
        sock.close()
    assert in_window, "the new process was ready before the connect: not in the window"
    assert reply.get("id") == 7 and "result" in reply, reply
    proc = reply["result"]
    assert proc["started_at"] != before["started_at"]
    agent.follow(proc["pid"])
    assert proc["pid"] != before["pid"]
    took = proc["takeover"]
    assert (took["from_pid"], took["from_version"]) == (before["pid"], before["version"])
    assert (took["handed"], took["adopted"], took["lost"]) == ([], [], [])
    # The same socket file, never re-bound.
    assert os.stat(agent.rpc_socket).st_ino == inode
    assert "(handed over)" in agent.log()


def test_controller_not_recreated_is_disconnected_and_reported(agent, base_dir, initiator):
    with agent.client() as c:
        kept = make_controller(c, base_dir, "kept", max_queues=1)
        gone = make_controller(c, base_dir, "gone", max_queues=1)
        before = c.call("framework_get_process")
    # The whole configuration is config.json and its log (docs/agent.md,
    # "Persistence"): edited, it goes to config.json alone.
    config = agent_state.load_file(agent.state_file)
    for sub in config["subsystems"]:
        if sub["subsystem"] == "vhost_blk":
            calls = sub["config"]
            sub["config"] = [x for x in calls if (x.get("params") or {}).get("ctrlr") != "gone"]
            assert len(sub["config"]) == len(calls) - 1
    with open(agent.state_file, "w") as f:
        json.dump(config, f)
    os.unlink(os.path.join(agent.state_dir, agent_state.LOG_FILE))
    with BackgroundInitiator(initiator, kept, *WORKLOAD, "--time", "4") as ok, \
            BackgroundInitiator(initiator, gone, *GONE_WORKLOAD) as lost:
        wait_io(agent, "kept")
        wait_io(agent, "gone")
        upgrade = subprocess.run(
            [sys.executable, "-m", "spdk_backend.cmd.cli", "--rpc-socket", agent.rpc_socket,
             "upgrade"], capture_output=True, text=True, timeout=90)
        # Disconnected: its requests never complete; it ends long before its 30 s.
        assert lost.wait(20) != 0, lost.describe()
        assert "target stopped completing requests" in lost.describe(), lost.describe()
        assert ok.wait(60) == 0, ok.describe() + agent.log()
    assert upgrade.returncode == 1, upgrade.stdout + upgrade.stderr
    assert "gone: not taken over" in upgrade.stdout, upgrade.stdout
    assert "1 of 2 session(s) taken over" in upgrade.stdout, upgrade.stdout
    proc = call(agent, "framework_get_process")
    assert proc["started_at"] != before["started_at"]
    assert proc["takeover"]["lost"] == ["gone"]
    assert proc["takeover"]["adopted"] == ["kept"]
    assert sorted(proc["takeover"]["handed"]) == ["gone", "kept"]
    log = agent.log()
    assert "vhost gone: handed over, but no such controller was created" in log, log
    assert "front-ends disconnected: gone" in log
    assert [x["ctrlr"] for x in call(agent, "vhost_get_controllers")] == ["kept"]
    # Its listening socket was closed too.
    assert _refused(gone)


def _refused(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    finally:
        s.close()
    return False


def test_unreadable_handoff_is_refused_and_the_agent_starts(base_dir):
    """A handoff of another version: its fds are closed, the agent starts as usual."""
    agent = agent_proc.AgentProcess(base_dir)
    r, w = os.pipe()
    doc = {"format": agent_handoff.FORMAT, "version": 99, "agent_version": "9.9",
           "pid": 1, "rpc_fd": None, "lock_fd": None, "fds": [r, w], "controllers": []}
    mfd = os.memfd_create("handoff-test")
    os.write(mfd, json.dumps(doc).encode())
    log = open(agent.log_file, "ab")
    try:
        agent.proc = subprocess.Popen(
            agent_proc.agent_command() + ["--config-file", agent.conf_file],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, **{agent_handoff.ENV: str(mfd)}), pass_fds=(r, w, mfd))
    finally:
        log.close()
        os.close(mfd)
        os.close(r)
    try:
        agent.wait_ready()
        # The agent closed its copy of the pipe's read end: a write breaks it.
        os.set_blocking(w, False)
        with pytest.raises(BrokenPipeError):
            os.write(w, b"x")
        proc = call(agent, "framework_get_process")
        assert proc["takeover"] is None
        text = agent.log()
        assert "version 99 of agent 9.9" in text, text
        # and it works: it serves and upgrades as ever.
        call(agent, "bdev_malloc_create", name="m0", num_blocks=64, block_size=512)
    finally:
        os.close(w)
        agent.stop()
        agent.kill9()


def test_upgrade_refused_while_dirty_pages_are_logged(agent, base_dir):
    from tests.support.vhost_frontend import DATA, Frontend, VIRTIO_BLK_T_IN
    gpa = 64 * MB
    with agent.client() as c:
        sock = make_controller(c, base_dir, "mig", max_queues=1)
        before = c.call("framework_get_process")
    with Frontend(sock, gpa=gpa, size=MB) as fe:
        fe.connect(log=True)
        assert controller(agent, "mig")["dirty_logging"]
        # The RPC says no.
        with agent.client() as c:
            with pytest.raises(Exception) as err:
                c.call("framework_upgrade")
        assert getattr(err.value, "code", None) == -16, err.value
        assert "live migration" in str(err.value)
        # SIGHUP asks no question: the engine refuses the export.
        os.kill(agent.proc.pid, signal.SIGHUP)
        wait_for(lambda: "upgrade: refused" in agent.log(), 10, "the refusal")
        proc = call(agent, "framework_get_process")
        assert proc["started_at"] == before["started_at"] and proc["takeover"] is None
        info = controller(agent, "mig")
        assert info["connected"] and info["dirty_logging"], info
        # The session was left as it was: it still serves.
        assert fe.request(VIRTIO_BLK_T_IN, 0, gpa + DATA, 4096) == 0
    # Once the migration is over, it upgrades.
    wait_for(lambda: not controller(agent, "mig")["connected"], 10, "the disconnect")
    call(agent, "framework_upgrade")
    assert agent.wait_upgraded(before["started_at"])["pid"] != before["pid"]


# Successors that fail, in order of how far they get: the old process keeps
# its sessions (before the export) or takes them back (after it).
_FAILING_SUCCESSOR = """
import os, socket, sys
s = socket.socket(fileno=int(os.environ["%s"]))
mode = sys.argv[1]
if mode == "cannot-start":
    sys.exit(3)
if mode == "other-version":
    s.sendall(b"ready 7")
    s.recv(16)          # until the old process gives up on it
    sys.exit(0)
if mode == "dies-holding-the-handoff":
    s.sendall(b"ready %d")
    socket.recv_fds(s, 256, 1)
    sys.exit(4)
""" % (agent_handoff.SUCCESSOR_ENV, agent_handoff.VERSION)

_FAILURES = {
    "cannot-start": "exited before it was ready (exit status 3); going on in this process",
    "other-version": "reads handoff version(s) [7], not %d; going on in this process"
                     % agent_handoff.VERSION,
    "dies-holding-the-handoff": "; taking the sessions back in this process",
}


@pytest.mark.parametrize("mode", sorted(_FAILURES))
def test_a_failing_successor_leaves_the_agent_serving(mode, base_dir, initiator, monkeypatch,
                                                      caplog):
    argv = [sys.executable, "-c", _FAILING_SUCCESSOR, mode]
    monkeypatch.setattr(agent_handoff, "command_line", lambda: (sys.executable, argv))
    monkeypatch.delenv(agent_handoff.ENV, raising=False)
    opts = fake_engine.agent_opts(base_dir, allowed_backing_dirs=[tempfile.gettempdir()],
                                  allowed_block_devices=())
    running = agent_proc.ThreadedAgent(opts)
    taken_back = mode == "dies-holding-the-handoff"
    try:
        running.start()
        with agent_client.AgentClient(opts.rpc_socket, timeout=30) as c:
            sock = make_controller(c, base_dir, "inproc", max_queues=1)
            before = c.call("framework_get_process")
        here = types.SimpleNamespace(rpc_socket=opts.rpc_socket)
        with BackgroundInitiator(initiator, sock, *WORKLOAD, "--time", "5") as ini:
            wait_io(here, "inproc")
            with agent_client.AgentClient(opts.rpc_socket, timeout=30) as c:
                c.call("framework_upgrade")
            wait_for(lambda: running.failed_upgrades == 1 or running.error, 60, "the upgrade attempt")
            assert running.error is None, repr(running.error)
            after = call(here, "framework_get_process")
            assert ini.proc.poll() is None, "the workload ended before the upgrade"
            info = controller(here, "inproc")
            assert info["connected"] and info["adopted"] is taken_back, info
            assert ini.wait(60) == 0, ini.describe()
        assert running.error is None, running.error
        assert _FAILURES[mode] in caplog.text, caplog.text
        assert after["pid"] == before["pid"] == os.getpid()
        if taken_back:
            # The engine started anew in this process and adopted its own sessions.
            assert after["started_at"] != before["started_at"]
            assert after["takeover"]["adopted"] == ["inproc"]
            assert after["takeover"]["lost"] == []
        else:
            # Nothing was exported: the same engine went on serving.
            assert after["started_at"] == before["started_at"]
            assert after["takeover"] is None
            assert "session handed over" not in caplog.text
        assert agent_handoff.ENV not in os.environ
        assert agent_handoff.SUCCESSOR_ENV not in os.environ
    finally:
        running.stop()
    # Nothing the handoff moved around is left open in this process.
    assert [t for t in _open_files() if "spdk-backend-handoff" in t or t.startswith(base_dir)] \
        == []


def _open_files():
    for fd in os.listdir("/proc/self/fd"):
        try:
            yield os.readlink("/proc/self/fd/" + fd)
        except FileNotFoundError:      # the fd listdir used
            pass


def test_a_new_version_that_cannot_start_leaves_the_old_one_serving(agent, base_dir,
                                                                     initiator):
    """The operator's broken upgrade (here: a config file the new process
    cannot parse): ``spdk-backend upgrade`` fails and says why, the agent
    goes on serving its front-end in the same process, untouched; once the
    file is fixed the upgrade goes through."""
    with agent.client() as c:
        sock = make_controller(c, base_dir, "kept", max_queues=1)
        before = c.call("framework_get_process")
    with open(agent.conf_file) as f:
        good = f.read()
    cli = [sys.executable, "-m", "spdk_backend.cmd.cli", "--rpc-socket", agent.rpc_socket,
           "upgrade"]
    with BackgroundInitiator(initiator, sock, *WORKLOAD, "--time", "4") as ini:
        wait_io(agent, "kept")
        with open(agent.conf_file, "w") as f:
            f.write(good + "\nthis is not an ini line\n")
        res = subprocess.run(cli, capture_output=True, text=True, timeout=90)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "the upgrade failed (the agent goes on serving in process %d)" % before["pid"] \
            in res.stderr, res.stderr
        assert "exited before it was ready (exit status 2)" in res.stderr, res.stderr
        proc = call(agent, "framework_get_process")
        assert (proc["pid"], proc["started_at"]) == (before["pid"], before["started_at"])
        assert proc["takeover"] is None and proc["upgrade_failed"]["at"] > 0
        assert agent.proc.poll() is None
        info = controller(agent, "kept")
        assert info["connected"] and not info["adopted"], info
        assert ini.wait(60) == 0, ini.describe() + agent.log()
    assert "session handed over" not in agent.log()
    with open(agent.conf_file, "w") as f:
        f.write(good)
    res = subprocess.run(cli, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0 and "upgraded to" in res.stdout, res.stdout + res.stderr
    assert agent.wait_upgraded(before["started_at"])["upgrade_failed"] is None


def _slow_successor_env(tmp_path, seconds):
    """An environment whose successor agent takes ``seconds`` longer to start
    (a sitecustomize on PYTHONPATH): a test, not the product, makes it slow."""
    site = tmp_path / "slow-successor"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, time\n"
        "if %r in os.environ:\n"
        "    time.sleep(%r)\n" % (agent_handoff.SUCCESSOR_ENV, seconds))
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(site) + (os.pathsep + path if path else "")}


def test_sigterm_while_the_successor_starts_stops_the_agent(base_dir, tmp_path):
    """A stop asked while the agent waits for its successor is a stop: the
    successor is abandoned (killed, reaped), the agent stops cleanly, and
    nothing holds the state lock afterwards."""
    agent = agent_proc.AgentProcess(base_dir)
    agent.start(env=_slow_successor_env(tmp_path, 5))
    try:
        with agent.client() as c:
            make_controller(c, base_dir, "s0", max_queues=1)
        old = agent.proc
        os.kill(old.pid, signal.SIGHUP)
        wait_for(lambda: "waiting until it is ready" in agent.log(), 30, "the successor")
        (succ,) = map(int, re.findall(r"upgrade: new process (\d+) started", agent.log()))
        os.kill(old.pid, signal.SIGTERM)
        assert old.wait(30) == 0, agent.log()
        log = agent.log()
        assert "a stop was asked meanwhile" in log, log
        assert "session handed over" not in log and "stopped" in log, log
        assert not os.path.exists(os.path.join(agent.vhost_socket_dir, "s0"))
        assert not os.path.exists("/proc/%d" % succ) or \
            open("/proc/%d/stat" % succ).read().split()[2] == "Z"
        # Nobody holds the lock: a new agent starts on the same state.
        agent.start()
        assert [x["ctrlr"] for x in call(agent, "vhost_get_controllers")] == ["s0"]
    finally:
        agent.stop()
        agent.kill9()


def test_sigterm_while_the_successor_takes_over_stops_it_cleanly(agent, base_dir):
    """A stop asked once the sessions are handed over reaches the successor,
    which stops cleanly as soon as it serves (it notes a SIGTERM that comes
    while it is still taking over)."""
    with agent.client() as c:
        make_controller(c, base_dir, "t0", max_queues=1)
        before = c.call("framework_get_process")
    old = agent.proc
    os.kill(old.pid, signal.SIGHUP)
    wait_for(lambda: "session(s) handed to process" in agent.log() or
             "taking over from process" in agent.log(), 30, "the hand-over")
    (succ,) = map(int, re.findall(r"upgrade: new process (\d+) started", agent.log()))
    os.kill(succ, signal.SIGTERM)
    assert old.wait(30) == 0, agent.log()
    handle = agent_proc.ProcessHandle(succ)
    handle.wait(30)
    log = agent.log()
    # The successor did not die of the signal: it stopped as the agent stops.
    assert re.search(r" %d INFO spdk_backend\.agent \[-\] stopped" % succ, log), log[-3000:]
    assert not os.path.exists(os.path.join(agent.vhost_socket_dir, "t0"))
    assert not os.path.exists(agent.rpc_socket)
    assert before["pid"] != succ


def test_the_units_execstop_waits_for_a_main_process_it_did_not_start(agent):
    """The shipped unit's ExecStop (systemd does not wait for a main process
    named by MAINPID= before its SIGKILL): run as systemd runs it, with
    $MAINPID, against the process that took over in an upgrade; it returns
    once that process has stopped cleanly."""
    import configparser
    import shlex
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(os.path.join(os.path.dirname(__file__), "..", "..", "..", "etc", "systemd",
                           "spdk-backend-agent.service"))
    argv = shlex.split(unit["Service"]["ExecStop"])
    before = call(agent, "framework_get_process")
    call(agent, "framework_upgrade")
    after = agent.wait_upgraded(before["started_at"])
    res = subprocess.run(argv, env=dict(os.environ, MAINPID=str(after["pid"])),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    # Returned only once the agent was gone, after its own clean stop.
    assert not os.path.exists("/proc/%d" % after["pid"]) or \
        open("/proc/%d/stat" % after["pid"]).read().split()[2] == "Z"
    assert agent.log().rstrip().endswith("spdk_backend.agent [-] stopped"), agent.log()[-2000:]
    assert not os.path.exists(agent.rpc_socket)
