"""The agent's Prometheus exporter against a real agent and engine.

A real ``spdk-backend-agent`` (tests/support/agent_proc.py) with
``metrics_port`` on a free port, a malloc bdev behind a vhost-user-blk
controller, and the C initiator (native/tools/vhost_initiator) playing
QEMU's part: /metrics is scraped over HTTP and parsed with
prometheus_client's parser, as Prometheus reads it.  Also: the exporter is
off by default, a port still in use is retried, and an upgrade moves the
exporter to the new process (the old one closes the port first), while a
failed one leaves it in the old process.

Kept light (short runs, qd 8): the machine has 2 cores.
"""

import os
import re
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client import parser

from spdk_backend.agent import client as agent_client
from spdk_backend.agent import handoff as agent_handoff
from tests.support import agent_proc
from tests.support import fake_engine
from tests.support.initiator import BackgroundInitiator
from tests.support.polling import wait_for

pytestmark = pytest.mark.timeout(180)

BLOCKS = 16384            # 8 MiB of 512-byte blocks
WORKLOAD = ["--rw", "randrw", "--bs", "4096", "--qd", "8", "--interrupt", "--json",
            "--io-timeout", "20", "--timeout-ms", "20000"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port, timeout=10):
    """{sample name: {frozenset(labels): value}} of one scrape."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=timeout) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def try_scrape(port):
    try:
        return scrape(port, timeout=2)
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


def value(samples, name, **labels):
    return samples[name][frozenset(labels.items())]


def total(samples, name, **labels):
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= k)


def tcp_listeners(pid):
    """TCP sockets process ``pid`` listens on: [(local address hex, port)]."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", target)
        if m:
            inodes.add(m.group(1))
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # TCP_LISTEN
                addr, port = local.rsplit(":", 1)
                out.append((addr, int(port, 16)))
    return out


def make_malloc_controller(c, name="vhost.0", bdev="m0", max_queues=2):
    c.call("bdev_malloc_create", name=bdev, num_blocks=BLOCKS, block_size=512)
    c.call("vhost_create_blk_controller", ctrlr=name, dev_name=bdev, max_queues=max_queues)
    return c.call("vhost_get_controllers", name=name)[0]["socket"]


def connected(port, ctrlr="vhost.0", bdev="m0"):
    s = try_scrape(port)
    return s is not None and s.get("spdk_backend_vhost_controller_connected", {}).get(
        frozenset({"ctrlr": ctrlr, "bdev": bdev}.items())) == 1


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def metrics_agent(base_dir, port):
    with agent_proc.AgentProcess(base_dir, metrics_port=port,
                                 metrics_address="127.0.0.1") as proc:
        wait_for(lambda: try_scrape(port), 10, "the exporter")
        yield proc


def test_the_exporter_is_off_by_default(agent):
    """No metrics option: the agent listens on no TCP port at all."""
    with agent.client() as c:
        make_malloc_controller(c)
        assert c.call("spdk_get_version")
    assert tcp_listeners(agent.proc.pid) == []
    assert "metrics:" not in agent.log()


def test_a_scrape_under_io(metrics_agent, port, initiator):
    agent = metrics_agent
    assert [p for _, p in tcp_listeners(agent.proc.pid)] == [port]
    with agent.client() as c:
        sock = make_malloc_controller(c)
    before = scrape(port)
    for part in ("reactor", "bdev", "vhost"):
        assert value(before, "spdk_backend_scrape_collector_success", collector=part) == 1
    assert value(before, "spdk_backend_bdev_info", bdev="m0", module="malloc") == 1
    assert value(before, "spdk_backend_bdev_size_bytes", bdev="m0") == BLOCKS * 512
    assert value(before, "spdk_backend_vhost_controller_connected",
                 ctrlr="vhost.0", bdev="m0") == 0
    assert value(before, "spdk_backend_vhost_controller_max_queues",
                 ctrlr="vhost.0", bdev="m0") == 2
    assert "process_start_time_seconds" in before

    c0 = dict(ctrlr="vhost.0", bdev="m0")

    def both_queues_started():
        s = try_scrape(port)
        return s if s is not None and total(
            s, "spdk_backend_vhost_controller_queues_started", **c0) == 2 else None

    # Long enough for a loaded machine to see it run (it is waited for).
    with BackgroundInitiator(initiator, sock, *WORKLOAD, "--queues", "2",
                             "--time", "10") as ini:
        during = wait_for(both_queues_started, 20, "both queues started in a scrape")
        assert ini.wait(60) == 0, ini.describe() + agent.log()
    res = ini.result()
    assert res is not None and res["errors"] == 0, ini.describe()
    reads, writes = res["main"]["reads"], res["main"]["writes"]
    assert reads > 0 and writes > 0, res

    assert value(during, "spdk_backend_vhost_controller_connected", **c0) == 1
    assert value(during, "spdk_backend_vhost_controller_queues", **c0) == 2
    assert value(during, "spdk_backend_vhost_controller_queues_started", **c0) == 2
    assert total(during, "spdk_backend_vhost_controller_queue_started", **c0) == 2

    after = scrape(port)

    def grew(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("spdk_backend_bdev_ios_total", bdev="m0", op="read") >= reads
    assert grew("spdk_backend_bdev_ios_total", bdev="m0", op="write") >= writes
    assert grew("spdk_backend_bdev_bytes_total", bdev="m0", op="read") >= reads * 4096
    assert grew("spdk_backend_bdev_bytes_total", bdev="m0", op="write") >= writes * 4096
    assert grew("spdk_backend_vhost_controller_completed_ios_total", **c0) >= reads + writes
    # Latency: the sums grew, and their means are sane (under 1 s, over 0).
    for op, n in (("read", reads), ("write", writes)):
        lat = grew("spdk_backend_bdev_io_latency_seconds_total", bdev="m0", op=op)
        assert 0 < lat / n < 1.0, (op, lat, n)
    assert grew("spdk_backend_bdev_io_time_seconds_total", bdev="m0") > 0
    assert value(after, "spdk_backend_bdev_io_errors_total", bdev="m0") == 0
    assert value(after, "spdk_backend_bdev_queue_depth", bdev="m0") == 0
    # The reactor worked.
    assert grew("spdk_backend_reactor_busy_seconds_total", lcore="0") > 0
    assert total(after, "spdk_backend_reactor_idle_seconds_total", lcore="0") > 0
    # The front-end is gone: the controller says so.
    wait_for(lambda: not connected(port), 20, "the disconnect in a scrape")
    # Matches the RPC's numbers (the same engine calls).
    with agent.client() as c:
        st = c.call("bdev_get_iostat", name="m0")["bdevs"][0]
    now = scrape(port)
    assert value(now, "spdk_backend_bdev_ios_total", bdev="m0", op="read") == st["num_read_ops"]
    assert value(now, "spdk_backend_bdev_bytes_total", bdev="m0",
                 op="write") == st["bytes_written"]


def test_a_bdev_deleted_between_scrapes_leaves_them(metrics_agent, port):
    with metrics_agent.client() as c:
        c.call("bdev_null_create", name="n0", num_blocks=1024, block_size=512)
        assert value(scrape(port), "spdk_backend_bdev_info", bdev="n0", module="null") == 1
        c.call("bdev_null_delete", name="n0")
    s = scrape(port)
    assert value(s, "spdk_backend_scrape_collector_success", collector="bdev") == 1
    assert "spdk_backend_bdev_info" not in s or not any(
        dict(k).get("bdev") == "n0" for k in s["spdk_backend_bdev_info"])


def test_scrapes_while_bdevs_come_and_go(metrics_agent, port):
    """Scrapes in a loop while bdevs are created and deleted: every scrape
    answers, and the agent is fine."""
    errors = []
    stop = threading.Event()

    def scraper():
        while not stop.is_set():
            try:
                s = scrape(port)
                if value(s, "spdk_backend_scrape_collector_success", collector="bdev") != 1:
                    errors.append("bdev collector failed")
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=scraper) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        with metrics_agent.client() as c:
            for i in range(40):
                c.call("bdev_null_create", name="churn%d" % i, num_blocks=64, block_size=512)
                c.call("bdev_null_delete", name="churn%d" % i)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert metrics_agent.proc.poll() is None
    assert "Traceback" not in metrics_agent.log()


def test_a_port_in_use_at_start_is_retried(base_dir, port):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        with agent_proc.AgentProcess(base_dir, metrics_port=port) as agent:
            # The agent serves meanwhile.
            with agent.client() as c:
                assert c.call("spdk_get_version")
            wait_for(lambda: "retrying until it is free" in agent.log(), 10, "the retry")
            holder.close()
            s = wait_for(lambda: try_scrape(port), 10, "the exporter after the port was freed")
            assert value(s, "spdk_backend_scrape_collector_success", collector="bdev") == 1
    finally:
        holder.close()


def _log_lines(log, pattern):
    return [line for line in log.splitlines() if re.search(pattern, line)]


def test_an_upgrade_moves_the_exporter_to_the_new_process(metrics_agent, port, initiator):
    """The old process closes the port before the guests' pause; the new one
    listens on it once it serves (without having to retry), and its scrape
    shows the session it took over."""
    agent = metrics_agent
    with agent.client() as c:
        sock = make_malloc_controller(c, max_queues=1)
        before = c.call("framework_get_process")
    first = scrape(port)
    with BackgroundInitiator(initiator, sock, *WORKLOAD, "--time", "30") as ini:
        wait_for(lambda: connected(port), 20, "the controller connected in a scrape")
        old = agent.proc
        with agent.client() as c:
            c.call("framework_upgrade")
        after = agent.wait_upgraded(before["started_at"])
        assert after["pid"] != before["pid"]
        s = wait_for(lambda: connected(port) and try_scrape(port), 20,
                     "the new process' exporter with the session")
        assert ini.proc.poll() is None, "the workload ended before the upgrade"
        assert ini.wait(60) == 0, ini.describe() + agent.log()
    assert old.wait(30) == 0
    assert s["process_start_time_seconds"][frozenset()] > \
        first["process_start_time_seconds"][frozenset()]
    assert [p for _, p in tcp_listeners(agent.proc.pid)] == [port]
    log = agent.log()
    stopped = _log_lines(log, r" %d .*metrics: exporter on 127.0.0.1 port %d stopped"
                         % (before["pid"], port))
    listening = _log_lines(log, r" %d .*metrics: Prometheus exporter listening on "
                           r"127.0.0.1 port %d" % (after["pid"], port))
    assert stopped and listening, log
    assert "still in use" not in log and "retrying until it is free" not in log, log
    # The old process closed it before it handed the sessions over.
    assert log.index(stopped[0]) < log.index(_log_lines(log, "session handed over")[0]), log


# A successor that takes the handoff and dies: the old process takes its
# sessions back (test_agent_upgrade.py has every failure mode).
_DYING_SUCCESSOR = """
import os, socket, sys
s = socket.socket(fileno=int(os.environ["%s"]))
s.sendall(b"ready %d")
socket.recv_fds(s, 256, 1)
sys.exit(4)
""" % (agent_handoff.SUCCESSOR_ENV, agent_handoff.VERSION)


def test_a_failed_upgrade_leaves_the_exporter_in_the_old_process(base_dir, port, initiator,
                                                                  monkeypatch, caplog):
    argv = [sys.executable, "-c", _DYING_SUCCESSOR]
    monkeypatch.setattr(agent_handoff, "command_line", lambda: (sys.executable, argv))
    monkeypatch.delenv(agent_handoff.ENV, raising=False)
    opts = fake_engine.agent_opts(base_dir, allowed_backing_dirs=[tempfile.gettempdir()],
                                  allowed_block_devices=(), metrics_port=port,
                                  metrics_address="127.0.0.1")
    with agent_proc.ThreadedAgent(opts) as running:
        wait_for(lambda: try_scrape(port), 10, "the exporter")
        with agent_client.AgentClient(opts.rpc_socket, timeout=30) as c:
            sock = make_malloc_controller(c, max_queues=1)
        with BackgroundInitiator(initiator, sock, *WORKLOAD, "--time", "30") as ini:
            wait_for(lambda: connected(port), 20, "the controller connected in a scrape")
            with agent_client.AgentClient(opts.rpc_socket, timeout=30) as c:
                c.call("framework_upgrade")
            wait_for(lambda: running.failed_upgrades == 1 or running.error, 60, "the upgrade attempt")
            assert running.error is None, repr(running.error)
            # Taken back: the same process listens again, with the session.
            wait_for(lambda: connected(port), 20, "the exporter back in the old process")
            assert ini.wait(60) == 0, ini.describe()
        assert "taking the sessions back in this process" in caplog.text, caplog.text
        assert running.agent.metrics is not None and running.agent.metrics.listening
        assert [p for _, p in tcp_listeners(os.getpid())] == [port]
    # Stopped with the agent.
    assert try_scrape(port) is None
    assert tcp_listeners(os.getpid()) == []


def test_sigterm_closes_the_port(metrics_agent, port):
    assert metrics_agent.stop() == 0
    assert try_scrape(port) is None
    log = metrics_agent.log()
    assert "metrics: exporter on 127.0.0.1 port %d stopped" % port in log, log
