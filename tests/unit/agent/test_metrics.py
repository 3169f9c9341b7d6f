"""The Prometheus exporter (agent/metrics.py) over a fake engine: what a
scrape shows and how, what it does when the engine misbehaves, the HTTP
server's start, retry and stop, the agent's wiring, the Grafana dashboard."""

import errno
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import exposition
from prometheus_client import parser

from spdk_backend import exception
from spdk_backend.agent import metrics
from tests.support import fake_engine

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DASHBOARD = os.path.join(REPO, "etc", "grafana", "spdk-backend.json")
DOC = os.path.join(REPO, "docs", "agent.md")

TICK_RATE = 1000000000  # ticks are nanoseconds (sb_get_ticks)


def iostat(name, **over):
    """One bdev of bdev_get_iostat, every field engine._iostat_dict gives."""
    st = {"name": name, "bytes_read": 0, "num_read_ops": 0, "bytes_written": 0,
          "num_write_ops": 0, "bytes_unmapped": 0, "num_unmap_ops": 0, "bytes_copied": 0,
          "num_copy_ops": 0, "read_latency_ticks": 0, "max_read_latency_ticks": 0,
          "min_read_latency_ticks": 0, "write_latency_ticks": 0,
          "max_write_latency_ticks": 0, "min_write_latency_ticks": 0,
          "unmap_latency_ticks": 0, "max_unmap_latency_ticks": 0,
          "min_unmap_latency_ticks": 0, "copy_latency_ticks": 0,
          "max_copy_latency_ticks": 0, "min_copy_latency_ticks": 0, "queue_depth": 0,
          "io_time": 0, "weighted_io_time": 0, "num_write_zeroes_ops": 0,
          "bytes_write_zeroes": 0, "num_flush_ops": 0, "num_reset_ops": 0,
          "io_error": {"count": 0}}
    st.update(over)
    return st


class StatEngine:
    """The engine calls the collector makes, answering from plain dicts."""

    def __init__(self):
        self.running = True
        self.tick_rate = TICK_RATE
        self.bdevs = {}          # name -> (bdev_get_bdevs entry, iostat entry)
        self.ctrlrs = []
        self.reactor_list = []
        self.calls = []
        self.fail = {}           # method -> exception to raise
        self.vanish = set()      # bdevs listed but gone by their iostat call
        self.gate = None         # an Event the iostat call waits for

    def add_bdev(self, name, module="malloc", num_blocks=2048, block_size=512, **stat):
        self.bdevs[name] = ({"name": name, "module": module, "num_blocks": num_blocks,
                             "block_size": block_size}, iostat(name, **stat))

    def _call(self, method):
        self.calls.append(method)
        if method in self.fail:
            raise self.fail[method]

    def reactors(self):
        self._call("reactors")
        return self.reactor_list

    def bdev_get_bdevs(self, name=None):
        self._call("bdev_get_bdevs")
        return [info for info, _ in self.bdevs.values()]

    def bdev_get_iostat(self, name=None):
        self._call("bdev_get_iostat")
        if self.gate is not None:
            self.gate.wait(10)
        if name in self.vanish or name not in self.bdevs:
            raise exception.NotFound(errno=errno.ENODEV, op="bdev_get_iostat",
                                     reason="bdev %s does not exist" % name)
        return {"tick_rate": self.tick_rate, "ticks": 0, "bdevs": [self.bdevs[name][1]]}

    def vhost_get_controllers(self, name=None):
        self._call("vhost_get_controllers")
        return self.ctrlrs


def ctrlr(name, bdev, connected=True, completed=0, queues=(True, False), cores=(0, 1),
          **over):
    c = {"ctrlr": name, "cpumask": "0x3", "socket": "/run/" + name,
         "backend_specific": {"block": {"readonly": False, "bdev": bdev}},
         "connected": connected, "broken": False, "max_queues": len(queues),
         "num_queues": len(queues) if connected else 0, "completed_ios": completed,
         "queues": [{"id": i, "reactor_core": cores[i % len(cores)], "started": s}
                    for i, s in enumerate(queues)],
         "dirty_logging": False, "adopted": False}
    c.update(over)
    return c


def full_engine():
    """An engine with something behind every metric."""
    eng = StatEngine()
    eng.reactor_list = [
        {"lcore": 0, "name": "reactor_0", "busy": 3 * TICK_RATE, "idle": TICK_RATE,
         "sleeps": 5, "wakeups": 6, "msgs": 7, "pollers": [{"name": "a"}, {"name": "b"}]},
        {"lcore": 1, "name": "reactor_1", "busy": TICK_RATE // 2, "idle": TICK_RATE // 2,
         "sleeps": 1, "wakeups": 2, "msgs": 3, "pollers": []},
    ]
    eng.add_bdev("m0", num_blocks=2048, block_size=512,
                 num_read_ops=10, bytes_read=40960, read_latency_ticks=5 * 10 ** 6,
                 num_write_ops=4, bytes_written=16384, write_latency_ticks=2 * 10 ** 6,
                 num_unmap_ops=1, bytes_unmapped=4096, unmap_latency_ticks=10 ** 5,
                 num_write_zeroes_ops=2, bytes_write_zeroes=8192, num_flush_ops=3,
                 num_reset_ops=1, num_copy_ops=1, bytes_copied=512, copy_latency_ticks=10,
                 queue_depth=7, io_time=1500, weighted_io_time=4500,
                 io_error={"count": 2})
    eng.add_bdev("n0", module="null", num_blocks=100, block_size=4096)
    eng.ctrlrs = [ctrlr("vhost.0", "m0", completed=123, queues=(True, False, False, False),
                        num_queues=2),
                  ctrlr("vhost.1", "n0", connected=False, queues=(False,), cores=(1,),
                        dirty_logging=True)]
    return eng


def scrape(collector):
    """{sample name: {frozenset(labels.items()): value}} of one scrape, through
    the text format and prometheus_client's parser (as Prometheus reads it)."""
    text = exposition.generate_latest(metrics.make_registry(collector, process_metrics=False))
    out = {}
    for family in parser.text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def value(samples, name, **labels):
    return samples[name][frozenset(labels.items())]


# ---- the collector ----

def test_every_metric_from_the_engines_numbers():
    s = scrape(metrics.EngineCollector(lambda: full_engine(), version="1.2.3"))
    assert value(s, "spdk_backend_agent_info", version="1.2.3") == 1
    for part in ("reactor", "bdev", "vhost"):
        assert value(s, "spdk_backend_scrape_collector_success", collector=part) == 1
        assert value(s, "spdk_backend_scrape_collector_duration_seconds",
                     collector=part) >= 0
    # Reactors: ticks become seconds.
    assert value(s, "spdk_backend_reactor_busy_seconds_total", lcore="0") == 3.0
    assert value(s, "spdk_backend_reactor_idle_seconds_total", lcore="0") == 1.0
    assert value(s, "spdk_backend_reactor_busy_seconds_total", lcore="1") == 0.5
    assert value(s, "spdk_backend_reactor_sleeps_total", lcore="0") == 5
    assert value(s, "spdk_backend_reactor_wakeups_total", lcore="0") == 6
    assert value(s, "spdk_backend_reactor_messages_total", lcore="1") == 3
    assert value(s, "spdk_backend_reactor_pollers", lcore="0") == 2
    # Bdevs.
    assert value(s, "spdk_backend_bdev_info", bdev="m0", module="malloc") == 1
    assert value(s, "spdk_backend_bdev_info", bdev="n0", module="null") == 1
    assert value(s, "spdk_backend_bdev_size_bytes", bdev="m0") == 2048 * 512
    assert value(s, "spdk_backend_bdev_size_bytes", bdev="n0") == 100 * 4096
    ios = {"read": 10, "write": 4, "unmap": 1, "write_zeroes": 2, "flush": 3, "reset": 1,
           "copy": 1}
    for op, n in ios.items():
        assert value(s, "spdk_backend_bdev_ios_total", bdev="m0", op=op) == n, op
        assert value(s, "spdk_backend_bdev_ios_total", bdev="n0", op=op) == 0, op
    nbytes = {"read": 40960, "write": 16384, "unmap": 4096, "write_zeroes": 8192,
              "copy": 512}
    for op, n in nbytes.items():
        assert value(s, "spdk_backend_bdev_bytes_total", bdev="m0", op=op) == n, op
    assert {dict(k)["op"] for k in s["spdk_backend_bdev_bytes_total"]} == set(nbytes)
    lat = {"read": 5e-3, "write": 2e-3, "unmap": 1e-4, "copy": 1e-8}
    for op, sec in lat.items():
        assert value(s, "spdk_backend_bdev_io_latency_seconds_total", bdev="m0",
                     op=op) == pytest.approx(sec), op
    assert {dict(k)["op"] for k in s["spdk_backend_bdev_io_latency_seconds_total"]} == set(lat)
    assert value(s, "spdk_backend_bdev_io_errors_total", bdev="m0") == 2
    assert value(s, "spdk_backend_bdev_queue_depth", bdev="m0") == 7
    assert value(s, "spdk_backend_bdev_io_time_seconds_total", bdev="m0") == 1.5
    assert value(s, "spdk_backend_bdev_io_time_weighted_seconds_total", bdev="m0") == 4.5
    # Controllers.
    c0, c1 = dict(ctrlr="vhost.0", bdev="m0"), dict(ctrlr="vhost.1", bdev="n0")
    assert value(s, "spdk_backend_vhost_controller_connected", **c0) == 1
    assert value(s, "spdk_backend_vhost_controller_connected", **c1) == 0
    assert value(s, "spdk_backend_vhost_controller_completed_ios_total", **c0) == 123
    assert value(s, "spdk_backend_vhost_controller_queues", **c0) == 2
    assert value(s, "spdk_backend_vhost_controller_queues", **c1) == 0
    assert value(s, "spdk_backend_vhost_controller_max_queues", **c0) == 4
    assert value(s, "spdk_backend_vhost_controller_queues_started", **c0) == 1
    # Per queue: the two the front-end set up, with the core serving each.
    assert {k: v for k, v in s["spdk_backend_vhost_controller_queue_started"].items()
            if ("ctrlr", "vhost.0") in k} == {
        frozenset(dict(c0, queue="0", lcore="0").items()): 1,
        frozenset(dict(c0, queue="1", lcore="1").items()): 0}
    # A controller without a front-end has none.
    assert not any(("ctrlr", "vhost.1") in k
                   for k in s["spdk_backend_vhost_controller_queue_started"])
    assert value(s, "spdk_backend_vhost_controller_broken", **c0) == 0
    assert value(s, "spdk_backend_vhost_controller_dirty_logging", **c1) == 1


def test_metrics_lists_every_name_a_scrape_shows():
    shown = set(scrape(metrics.EngineCollector(full_engine)))
    declared = {n for names in metrics.METRICS.values() for n in names}
    assert shown == declared
    for name in declared:
        assert re.match(r"^spdk_backend_[a-z0-9_]+$", name), name


def test_counters_are_counters_and_gauges_gauges():
    reg = metrics.make_registry(metrics.EngineCollector(full_engine), process_metrics=False)
    text = exposition.generate_latest(reg).decode()
    for family in parser.text_string_to_metric_families(text):
        counter = any(s.name.endswith("_total") for s in family.samples)
        assert family.type == ("counter" if counter else "gauge"), family.name


def test_a_bdev_deleted_mid_scrape_is_left_out():
    eng = full_engine()
    eng.vanish.add("m0")
    s = scrape(metrics.EngineCollector(lambda: eng))
    assert value(s, "spdk_backend_scrape_collector_success", collector="bdev") == 1
    assert {dict(k)["bdev"] for k in s["spdk_backend_bdev_ios_total"]} == {"n0"}
    assert {dict(k)["bdev"] for k in s["spdk_backend_bdev_info"]} == {"n0"}


@pytest.mark.parametrize("error", [
    exception.EngineTimeout(errno=exception.WAITER_GAVE_UP, op="bdev_get_iostat",
                            reason="the reactor did not answer"),
    exception.EngineNotRunning(op="bdev_get_iostat"),
    RuntimeError("a bug"),
])
def test_a_failing_engine_call_fails_its_collector_only(error, caplog):
    eng = full_engine()
    eng.fail["bdev_get_iostat"] = error
    s = scrape(metrics.EngineCollector(lambda: eng))
    assert value(s, "spdk_backend_scrape_collector_success", collector="bdev") == 0
    assert value(s, "spdk_backend_scrape_collector_success", collector="reactor") == 1
    assert value(s, "spdk_backend_scrape_collector_success", collector="vhost") == 1
    assert "spdk_backend_bdev_ios_total" not in s
    assert value(s, "spdk_backend_vhost_controller_connected", ctrlr="vhost.0",
                 bdev="m0") == 1
    assert "collector bdev failed" in caplog.text


def test_no_engine_or_a_stopped_one_is_not_asked():
    s = scrape(metrics.EngineCollector(lambda: None, version="v"))
    assert value(s, "spdk_backend_agent_info", version="v") == 1
    assert value(s, "spdk_backend_scrape_collector_success", collector="bdev") == 0
    eng = full_engine()
    eng.running = False
    s = scrape(metrics.EngineCollector(lambda: eng))
    assert value(s, "spdk_backend_scrape_collector_success", collector="reactor") == 0
    assert eng.calls == []


def test_a_scrape_gives_up_on_a_slow_engine_after_its_budget():
    eng = full_engine()
    for i in range(10):
        eng.add_bdev("x%d" % i)
    now = [0.0]

    def slow_iostat(name=None, _orig=eng.bdev_get_iostat):
        now[0] += 1.0  # each call "takes" a second
        return _orig(name)

    eng.bdev_get_iostat = slow_iostat
    c = metrics.EngineCollector(lambda: eng, budget_s=4.5, clock=lambda: now[0])
    s = scrape(c)
    assert value(s, "spdk_backend_scrape_collector_success", collector="bdev") == 0
    assert value(s, "spdk_backend_scrape_collector_success", collector="reactor") == 1
    # It stopped asking: 12 bdevs listed, at most 5 read.
    assert eng.calls.count("bdev_get_iostat") <= 5


def test_close_waits_for_the_scrape_in_progress_and_keeps_later_ones_off_the_engine():
    eng = full_engine()
    eng.gate = threading.Event()
    c = metrics.EngineCollector(lambda: eng)
    result = []
    t = threading.Thread(target=lambda: result.append(scrape(c)))
    t.start()
    while "bdev_get_iostat" not in eng.calls:
        time.sleep(0.005)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (c.close(), closed.set()))
    closer.start()
    assert not closed.wait(0.2), "close() returned while a scrape read the engine"
    eng.gate.set()
    t.join(10)
    closer.join(10)
    assert closed.is_set() and c.closed
    assert value(result[0], "spdk_backend_scrape_collector_success", collector="bdev") == 1
    eng.calls.clear()
    s = scrape(c)
    assert eng.calls == []
    assert value(s, "spdk_backend_scrape_collector_success", collector="vhost") == 0


def test_a_second_scrape_does_not_wait_forever_for_a_stuck_one():
    eng = full_engine()
    eng.gate = threading.Event()
    c = metrics.EngineCollector(lambda: eng, wait_s=0.1)
    t = threading.Thread(target=lambda: scrape(c))
    t.start()
    try:
        while "bdev_get_iostat" not in eng.calls:
            time.sleep(0.005)
        s = scrape(c)
        assert value(s, "spdk_backend_scrape_collector_success", collector="bdev") == 0
        assert "spdk_backend_agent_info" in s
    finally:
        eng.gate.set()
        t.join(10)


def test_the_fake_engine_of_the_agent_tests_scrapes_too():
    """tests/support/fake_engine.py gives partial iostat entries: what is
    missing is left out, never a failure."""
    eng = fake_engine.FakeEngine()
    eng.start()
    eng.bdev_malloc_create("m0", 64, 512)
    eng.vhost_create_blk_controller("c0", "m0")
    s = scrape(metrics.EngineCollector(lambda: eng))
    for part in ("reactor", "bdev", "vhost"):
        assert value(s, "spdk_backend_scrape_collector_success", collector=part) == 1
    assert value(s, "spdk_backend_bdev_ios_total", bdev="m0", op="read") > 0
    assert value(s, "spdk_backend_vhost_controller_completed_ios_total", ctrlr="c0",
                 bdev="m0") > 0


# ---- the HTTP server ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/metrics", timeout=5, host="127.0.0.1"):
    host = "[%s]" % host if ":" in host else host
    with urllib.request.urlopen("http://%s:%d%s" % (host, port, path),
                                timeout=timeout) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read().decode()


def can_bind(port):
    """Whether a server can listen on the port now (SO_REUSEADDR, as every
    server sets it: connections the exporter closed may wait in TIME_WAIT)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_exporter_serves_and_stop_frees_the_port():
    port = free_port()
    exp = metrics.start_exporter(lambda: full_engine(), "127.0.0.1", port, version="9")
    try:
        assert exp.listening and exp.bound_port == port
        status, ctype, body = http_get(port)
        assert status == 200 and ctype.startswith("text/plain")
        names = {s.name for f in parser.text_string_to_metric_families(body)
                 for s in f.samples}
        assert "spdk_backend_bdev_ios_total" in names
        assert "process_start_time_seconds" in names  # the process_* metrics
        assert not can_bind(port)
    finally:
        exp.stop()
    assert not exp.listening
    assert can_bind(port)
    with pytest.raises(urllib.error.URLError):
        http_get(port, timeout=1)
    assert exp.collector.closed
    exp.stop()  # again: nothing


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("address", [
    "localhost",
    pytest.param("::1", marks=pytest.mark.skipif(not ipv6_loopback(),
                                                 reason="no IPv6 loopback")),
])
def test_exporter_ipv6_and_host_names(address):
    port = free_port()
    exp = metrics.start_exporter(lambda: None, address, port)
    try:
        assert exp.listening
        host = exp._httpd.server_address[0]
        assert http_get(port, host=host)[0] == 200
    finally:
        exp.stop()


def test_exporter_retries_a_port_in_use_until_it_is_free(caplog):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    collector = metrics.EngineCollector(lambda: None)
    exp = metrics.Exporter("127.0.0.1", port, metrics.make_registry(collector),
                           collector=collector, retry_s=0.02)
    try:
        assert exp.start() is False
        assert "retrying until it is free" in caplog.text
        time.sleep(0.1)
        assert not exp.listening
        holder.close()
        deadline = time.monotonic() + 5
        while not exp.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exp.listening
        assert http_get(port)[0] == 200
    finally:
        holder.close()
        exp.stop()
    assert can_bind(port)


def test_exporter_stop_while_retrying_ends_the_retries():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        exp = metrics.Exporter("127.0.0.1", port, metrics.make_registry(
            metrics.EngineCollector(lambda: None)), retry_s=0.02)
        exp.start()
        exp.stop()
        assert exp._retrier is None and not exp.listening
        holder.close()
        time.sleep(0.1)
        assert not exp.listening and can_bind(port)
    finally:
        holder.close()


def _unresolvable(code):
    def resolve(address, port):
        raise socket.gaierror(code, "test: %s" % address)
    return resolve


def test_exporter_cannot_listen_logs_and_does_not_raise(caplog, monkeypatch):
    # A name that does not exist (decided here: a machine without DNS would
    # answer "try again" for any name).
    monkeypatch.setattr(metrics, "_resolve", _unresolvable(socket.EAI_NONAME))
    exp = metrics.Exporter("no-such-host.invalid", free_port(), metrics.make_registry(
        metrics.EngineCollector(lambda: None)))
    assert exp.start() is False
    assert not exp.listening and exp._retrier is None
    assert "serves without its Prometheus exporter" in caplog.text
    exp.stop()


def test_exporter_retries_a_name_dns_cannot_resolve_yet(caplog, monkeypatch):
    real = metrics._resolve
    calls = []

    def resolve(address, port):
        calls.append(address)
        if len(calls) < 3:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real("127.0.0.1", port)

    monkeypatch.setattr(metrics, "_resolve", resolve)
    port = free_port()
    exp = metrics.Exporter("metrics.example", port, metrics.make_registry(
        metrics.EngineCollector(lambda: None)), retry_s=0.02)
    try:
        assert exp.start() is False
        deadline = time.monotonic() + 5
        while not exp.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exp.listening and len(calls) == 3
        assert http_get(port)[0] == 200
    finally:
        exp.stop()


def test_exporter_serves_few_connections_at_once_and_drops_idle_ones(capfd):
    port = free_port()
    exp = metrics.start_exporter(lambda: None, "127.0.0.1", port)
    idle = []
    try:
        # Connections that send nothing hold their slots...
        for _ in range(metrics.MAX_CONNECTIONS):
            c = socket.create_connection(("127.0.0.1", port))
            idle.append(c)
        time.sleep(0.3)
        # ...so one more is closed at once, without an answer.
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(2)   # an idle one would be served for REQUEST_TIMEOUT_S
        assert extra.recv(1) == b""
        extra.close()
        # The idle ones are dropped after REQUEST_TIMEOUT_S; then scrapes work.
        for c in idle:
            c.settimeout(metrics.REQUEST_TIMEOUT_S + 5)
            assert c.recv(1) == b""
        assert http_get(port)[0] == 200
    finally:
        for c in idle:
            c.close()
        exp.stop()
    # The timed-out requests left no traceback on stderr.
    assert "Traceback" not in capfd.readouterr().err


def test_exporter_start_asks_no_reverse_dns(monkeypatch):
    def no_lookup(*args):
        raise AssertionError("getfqdn called: a slow resolver would hold the agent's start")

    monkeypatch.setattr(socket, "getfqdn", no_lookup)
    port = free_port()
    exp = metrics.start_exporter(lambda: None, "127.0.0.1", port)
    try:
        assert exp.listening and http_get(port)[0] == 200
    finally:
        exp.stop()


# ---- the agent's wiring ----

def wait_listening(agent, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.metrics is not None and agent.metrics.listening:
            return agent.metrics
        time.sleep(0.01)
    raise AssertionError("the exporter does not listen")


def test_agent_without_metrics_port_has_no_exporter(short_tmp):
    with fake_engine.InProcessAgent(short_tmp) as a:
        time.sleep(0.1)
        assert a.agent.metrics is None


def test_agent_option_defaults_turn_the_exporter_off():
    from oslo_config import cfg
    from spdk_backend.conf import agent as agent_conf
    conf = cfg.ConfigOpts()
    agent_conf.register_opts(conf)
    conf([])
    assert conf.agent.metrics_port is None
    assert conf.agent.metrics_address == "127.0.0.1"


def test_agent_serves_metrics_and_closes_the_port_before_the_engine_stops(short_tmp):
    port = free_port()
    seen = {}
    with fake_engine.InProcessAgent(short_tmp, metrics_port=port,
                                    metrics_address="127.0.0.1") as a:
        from spdk_backend.agent import client as agent_client
        with agent_client.AgentClient(a.opts.rpc_socket) as c:
            c.call("bdev_malloc_create", name="m0", num_blocks=64, block_size=512)
        exp = wait_listening(a.agent)
        body = http_get(port)[2]
        assert 'spdk_backend_bdev_info{bdev="m0",module="malloc disk"} 1.0' in body
        engine = a.engine
        orig_stop = engine.stop

        def stop():
            seen["port_free"] = can_bind(port)
            seen["closed"] = exp.collector.closed
            orig_stop()

        engine.stop = stop
    assert seen == {"port_free": True, "closed": True}


def test_hand_over_closes_the_port_before_the_sessions_go(short_tmp, monkeypatch):
    """The successor binds the port once it serves: the serving process
    closes it before it exports the sessions; when the hand-over fails,
    serve() starts the exporter again."""
    from spdk_backend.agent import handoff as agent_handoff

    class Successor:
        pid = 4242
        abandoned = False

        def wait_ready(self):
            pass

        def abandon(self):
            self.abandoned = True

    succ = Successor()
    monkeypatch.setattr(agent_handoff.Successor, "spawn", staticmethod(lambda: succ))
    port = free_port()
    seen = {}
    with fake_engine.InProcessAgent(short_tmp, metrics_port=port) as a:
        wait_listening(a.agent)

        def export():
            seen["port_free"] = can_bind(port)
            raise exception.SpdkBackendException("refused for the test")

        a.engine.vhost_handoff_export = export
        assert a.agent.hand_over() is False
        assert seen == {"port_free": True} and succ.abandoned
        assert a.agent.metrics is None
        a.agent._start_metrics()    # what serve() does when it serves again
        wait_listening(a.agent)
        assert http_get(port)[0] == 200


def test_agent_metrics_start_failure_is_not_fatal(short_tmp, monkeypatch, caplog):
    def boom(*a, **kw):
        raise RuntimeError("no exporter today")

    monkeypatch.setattr(metrics, "start_exporter", boom)
    with fake_engine.InProcessAgent(short_tmp, metrics_port=free_port()) as a:
        from spdk_backend.agent import client as agent_client
        with agent_client.AgentClient(a.opts.rpc_socket) as c:
            assert c.call("spdk_get_version")
        assert a.agent.metrics is None
    assert "serves without it" in caplog.text


# ---- the dashboard and the docs ----

def dashboard_exprs(node):
    """Every PromQL string of the dashboard: panel targets, variable queries."""
    if isinstance(node, dict):
        for key, val in node.items():
            if key in ("expr", "definition") and isinstance(val, str):
                yield val
            elif key == "query" and isinstance(val, str):
                yield val
            else:
                yield from dashboard_exprs(val)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def test_dashboard_uses_only_metrics_the_exporter_exports():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exported = set(scrape(metrics.EngineCollector(full_engine)))
    referenced = set()
    for expr in dashboard_exprs(dash):
        referenced.update(re.findall(r"\bspdk_backend_[a-z0-9_]+", expr))
    assert referenced, "no spdk_backend_ metric in the dashboard"
    assert referenced <= exported, sorted(referenced - exported)
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for what in ("iops", "throughput", "latency", "busy ratio", "connected"):
        assert what in titles, what
    # Panels of one dashboard need distinct ids; every target its data source.
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            assert t["expr"] and t["refId"]


def test_docs_describe_every_metric():
    with open(DOC) as f:
        doc = f.read()
    for names in metrics.METRICS.values():
        for name in names:
            assert "`%s`" % name in doc, name
    assert "etc/grafana/spdk-backend.json" in doc
    assert "`metrics_port`" in doc and "`metrics_address`" in doc
