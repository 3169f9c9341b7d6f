"""The agent's Prometheus exporter (``metrics_port`` in ``[agent]``).

Nothing is sampled in the background: every scrape asks the engine, with
the calls the JSON-RPC methods use (``bdev_get_bdevs``/``bdev_get_iostat``,
``vhost_get_controllers``, ``framework_get_reactors``), and turns the answer
into metric families (:class:`EngineCollector`).  Each of those calls is a
short message to a reactor or to the vhost control thread, never a lock on
the data path, so a scrape costs the engine what ``spdk-backend status``
costs it.

The HTTP server (:class:`Exporter`) is a thread of the agent process.  It
is started once the agent serves and stopped before its engine stops (a
scrape in progress finishes first) and before an upgrade hands the agent
over, so the new process can listen on the same port; a port still taken
when the exporter starts is retried in the background until it is free.

Metric names follow Prometheus' conventions: the ``spdk_backend_`` prefix,
``_total`` on counters, seconds and bytes.  Latency is a sum of seconds per
I/O type (the engine keeps no buckets): ``rate(..._io_latency_seconds_total)
/ rate(..._ios_total)`` is the mean latency.  ``METRICS`` lists every name a
scrape can show; docs/agent.md ("Metrics") describes them.
"""

import errno
import logging
import socket
import socketserver
import threading
import time
from wsgiref import simple_server

from prometheus_client import core as prom_core
from prometheus_client import exposition
from prometheus_client import registry as prom_registry

from spdk_backend import exception

LOG = logging.getLogger(__name__)

PREFIX = "spdk_backend_"

# bdev_get_iostat fields per I/O type: (op, ops, bytes, latency ticks).
_BDEV_OPS = (
    ("read", "num_read_ops", "bytes_read", "read_latency_ticks"),
    ("write", "num_write_ops", "bytes_written", "write_latency_ticks"),
    ("unmap", "num_unmap_ops", "bytes_unmapped", "unmap_latency_ticks"),
    ("write_zeroes", "num_write_zeroes_ops", "bytes_write_zeroes", None),
    ("flush", "num_flush_ops", None, None),
    ("reset", "num_reset_ops", None, None),
    ("copy", "num_copy_ops", "bytes_copied", "copy_latency_ticks"),
)

# Every sample name a scrape can show (counters with their _total), by collector.
METRICS = {
    "agent": (
        "spdk_backend_agent_info",
        "spdk_backend_scrape_collector_success",
        "spdk_backend_scrape_collector_duration_seconds",
    ),
    "reactor": (
        "spdk_backend_reactor_busy_seconds_total",
        "spdk_backend_reactor_idle_seconds_total",
        "spdk_backend_reactor_sleeps_total",
        "spdk_backend_reactor_wakeups_total",
        "spdk_backend_reactor_messages_total",
        "spdk_backend_reactor_pollers",
    ),
    "bdev": (
        "spdk_backend_bdev_info",
        "spdk_backend_bdev_size_bytes",
        "spdk_backend_bdev_ios_total",
        "spdk_backend_bdev_bytes_total",
        "spdk_backend_bdev_io_latency_seconds_total",
        "spdk_backend_bdev_io_errors_total",
        "spdk_backend_bdev_queue_depth",
        "spdk_backend_bdev_io_time_seconds_total",
        "spdk_backend_bdev_io_time_weighted_seconds_total",
    ),
    "vhost": (
        "spdk_backend_vhost_controller_connected",
        "spdk_backend_vhost_controller_completed_ios_total",
        "spdk_backend_vhost_controller_queues",
        "spdk_backend_vhost_controller_max_queues",
        "spdk_backend_vhost_controller_queues_started",
        "spdk_backend_vhost_controller_queue_started",
        "spdk_backend_vhost_controller_broken",
        "spdk_backend_vhost_controller_dirty_logging",
    ),
}

# A scrape gives up on the engine after this long (Prometheus' default
# scrape timeout is 10 s): a collector not done by then reports failure
# (spdk_backend_scrape_collector_success 0) and the rest is served.
SCRAPE_BUDGET_S = 8.0
# A second scrape waits this long for the one in progress, then answers
# without the engine's metrics.
SCRAPE_WAIT_S = 10.0
# Accepted connections that send nothing are dropped after this long.
REQUEST_TIMEOUT_S = 5.0
# Connections served at once; more are closed at once (scrapes of the
# engine run one at a time anyway), so whoever reaches the port cannot make
# the agent start threads without bound.
MAX_CONNECTIONS = 4
# close() waits this long for a scrape in progress before it lets the
# engine stop anyway (the scrape then fails its engine calls).
CLOSE_WAIT_S = 10.0
# Binding a port that is still in use (the previous process of an upgrade,
# a restart racing the old one) is retried this often; the log says so at
# most once a minute.
BIND_RETRY_S = 0.25
BIND_LOG_EVERY_S = 60.0
# How often the server thread looks whether it should stop.
POLL_INTERVAL_S = 0.05


def _name(suffix):
    return PREFIX + suffix


class _OutOfTime(Exception):
    pass


class EngineCollector(prom_registry.Collector):
    """The engine's numbers, read at scrape time.

    ``engine_source`` is a callable returning the engine (or None while
    there is none); it is called at each scrape, so the collector follows an
    agent whose engine is replaced (a failed upgrade takes its sessions back
    with a new engine).  :meth:`close` waits for a scrape in progress and
    stops every later one from touching the engine: call it before the
    engine stops.
    """

    def __init__(self, engine_source, version="", budget_s=SCRAPE_BUDGET_S,
                 wait_s=SCRAPE_WAIT_S, clock=time.monotonic):
        self._engine_source = engine_source
        self._version = version
        self._budget_s = budget_s
        self._wait_s = wait_s
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

    def describe(self):
        # No scrape when the collector is registered (the engine may not run yet).
        return []

    def close(self, wait_s=CLOSE_WAIT_S):
        """No scrape touches the engine after this; waits up to ``wait_s``
        for one in progress (a single engine call may take longer)."""
        got = self._lock.acquire(timeout=wait_s)
        self._closed = True
        if got:
            self._lock.release()
        else:
            LOG.warning("metrics: a scrape still reads the engine after %ss; going on",
                        wait_s)

    @property
    def closed(self):
        return self._closed

    def collect(self):
        info = prom_core.GaugeMetricFamily(
            _name("agent_info"), "The agent process: its version (always 1).",
            labels=["version"])
        info.add_metric([self._version], 1)
        success = prom_core.GaugeMetricFamily(
            _name("scrape_collector_success"),
            "1 when the collector read the engine in this scrape, 0 when it could not "
            "(no engine, engine call failed or timed out).", labels=["collector"])
        duration = prom_core.GaugeMetricFamily(
            _name("scrape_collector_duration_seconds"),
            "How long the collector took in this scrape.", labels=["collector"])
        families = []
        parts = (("reactor", self._reactors), ("bdev", self._bdevs), ("vhost", self._vhost))
        if not self._lock.acquire(timeout=self._wait_s):
            LOG.warning("metrics: a scrape is still reading the engine; this one answers "
                        "without the engine's metrics")
            for name, _ in parts:
                success.add_metric([name], 0)
            return [info, success, duration]
        try:
            engine = None if self._closed else self._engine_source()
            deadline = self._clock() + self._budget_s
            for name, func in parts:
                start = self._clock()
                ok = False
                if self._clock() > deadline:
                    LOG.warning("metrics: collector %s skipped: the scrape ran out of "
                                "time (%.1f s)", name, self._budget_s)
                elif engine is not None and getattr(engine, "running", True):
                    try:
                        out = []
                        func(engine, out, deadline)
                        families.extend(out)
                        ok = True
                    except _OutOfTime:
                        LOG.warning("metrics: collector %s gave up after %.1f s (the "
                                    "engine answers slowly)", name, self._budget_s)
                    except exception.SpdkBackendException as exc:
                        LOG.warning("metrics: collector %s failed: %s", name, exc)
                    except Exception:  # a scrape never takes the agent down
                        LOG.exception("metrics: collector %s failed", name)
                success.add_metric([name], 1 if ok else 0)
                duration.add_metric([name], max(0.0, self._clock() - start))
        finally:
            self._lock.release()
        return [info, success, duration] + families

    def _check_time(self, deadline):
        if self._clock() > deadline:
            raise _OutOfTime()

    # ---- reactors (framework_get_reactors) ----

    def _reactors(self, engine, out, deadline):
        rate = float(engine.tick_rate or 1)
        labels = ["lcore"]
        busy = prom_core.CounterMetricFamily(
            _name("reactor_busy_seconds"),
            "Time the reactor spent doing work (busy ticks / tick rate); busy ratio = "
            "rate(busy) / (rate(busy) + rate(idle)).", labels=labels)
        idle = prom_core.CounterMetricFamily(
            _name("reactor_idle_seconds"),
            "Time the reactor polled without finding work or slept.", labels=labels)
        sleeps = prom_core.CounterMetricFamily(
            _name("reactor_sleeps"), "Times the reactor went to sleep.", labels=labels)
        wakeups = prom_core.CounterMetricFamily(
            _name("reactor_wakeups"), "Times the reactor was woken up.", labels=labels)
        msgs = prom_core.CounterMetricFamily(
            _name("reactor_messages"), "Messages the reactor ran.", labels=labels)
        pollers = prom_core.GaugeMetricFamily(
            _name("reactor_pollers"), "Pollers registered on the reactor.", labels=labels)
        for r in engine.reactors():
            key = [str(r["lcore"])]
            busy.add_metric(key, r["busy"] / rate)
            idle.add_metric(key, r["idle"] / rate)
            for family, field in ((sleeps, "sleeps"), (wakeups, "wakeups"), (msgs, "msgs")):
                if r.get(field) is not None:
                    family.add_metric(key, r[field])
            if r.get("pollers") is not None:
                pollers.add_metric(key, len(r["pollers"]))
        self._check_time(deadline)
        out.extend([busy, idle, sleeps, wakeups, msgs, pollers])

    # ---- bdevs (bdev_get_bdevs, bdev_get_iostat) ----

    def _bdevs(self, engine, out, deadline):
        info = prom_core.GaugeMetricFamily(
            _name("bdev_info"), "A bdev and its backend module (always 1).",
            labels=["bdev", "module"])
        size = prom_core.GaugeMetricFamily(
            _name("bdev_size_bytes"), "Size of the bdev.", labels=["bdev"])
        ios = prom_core.CounterMetricFamily(
            _name("bdev_ios"), "I/Os completed successfully, by type.", labels=["bdev", "op"])
        nbytes = prom_core.CounterMetricFamily(
            _name("bdev_bytes"), "Bytes of the completed I/Os, by type.", labels=["bdev", "op"])
        latency = prom_core.CounterMetricFamily(
            _name("bdev_io_latency_seconds"),
            "Sum of the latencies (submission to completion) of the completed I/Os, by "
            "type; divided by the rate of spdk_backend_bdev_ios_total: mean latency.",
            labels=["bdev", "op"])
        errors = prom_core.CounterMetricFamily(
            _name("bdev_io_errors"), "I/Os that completed with an error.", labels=["bdev"])
        depth = prom_core.GaugeMetricFamily(
            _name("bdev_queue_depth"), "I/Os in flight now, over all channels.",
            labels=["bdev"])
        io_time = prom_core.CounterMetricFamily(
            _name("bdev_io_time_seconds"), "Time during which the bdev had I/O in flight.",
            labels=["bdev"])
        weighted = prom_core.CounterMetricFamily(
            _name("bdev_io_time_weighted_seconds"),
            "Time integral of the number of I/Os in flight; its rate is the mean queue "
            "depth.", labels=["bdev"])
        tick_rate = None
        for bdev in engine.bdev_get_bdevs():
            self._check_time(deadline)
            name = bdev["name"]
            try:
                stats = engine.bdev_get_iostat(name)
            except exception.NotFound:
                continue    # deleted since the list: not an error
            if tick_rate is None:
                tick_rate = float(stats.get("tick_rate") or engine.tick_rate or 1)
            for st in stats.get("bdevs", []):
                if st.get("name") != name:
                    continue
                info.add_metric([name, str(bdev.get("module") or
                                           bdev.get("product_name") or "")], 1)
                if bdev.get("num_blocks") is not None and bdev.get("block_size"):
                    size.add_metric([name], bdev["num_blocks"] * bdev["block_size"])
                for op, ops_key, bytes_key, lat_key in _BDEV_OPS:
                    if st.get(ops_key) is not None:
                        ios.add_metric([name, op], st[ops_key])
                    if bytes_key and st.get(bytes_key) is not None:
                        nbytes.add_metric([name, op], st[bytes_key])
                    if lat_key and st.get(lat_key) is not None:
                        latency.add_metric([name, op], st[lat_key] / tick_rate)
                errs = (st.get("io_error") or {}).get("count")
                if errs is not None:
                    errors.add_metric([name], errs)
                if st.get("queue_depth") is not None:
                    depth.add_metric([name], st["queue_depth"])
                # Both in milliseconds (SPDK's units).
                if st.get("io_time") is not None:
                    io_time.add_metric([name], st["io_time"] / 1000.0)
                if st.get("weighted_io_time") is not None:
                    weighted.add_metric([name], st["weighted_io_time"] / 1000.0)
        out.extend([info, size, ios, nbytes, latency, errors, depth, io_time, weighted])

    # ---- vhost controllers (vhost_get_controllers) ----

    def _vhost(self, engine, out, deadline):
        labels = ["ctrlr", "bdev"]
        connected = prom_core.GaugeMetricFamily(
            _name("vhost_controller_connected"),
            "1 while a front-end (QEMU) is connected to the controller.", labels=labels)
        completed = prom_core.CounterMetricFamily(
            _name("vhost_controller_completed_ios"),
            "Requests the controller completed to its front-ends; its rate is the "
            "controller's IOPS.", labels=labels)
        queues = prom_core.GaugeMetricFamily(
            _name("vhost_controller_queues"), "Virtqueues the front-end set up.",
            labels=labels)
        max_queues = prom_core.GaugeMetricFamily(
            _name("vhost_controller_max_queues"), "Virtqueues the controller offers.",
            labels=labels)
        started = prom_core.GaugeMetricFamily(
            _name("vhost_controller_queues_started"), "Virtqueues being served now.",
            labels=labels)
        queue = prom_core.GaugeMetricFamily(
            _name("vhost_controller_queue_started"),
            "1 while the virtqueue is served, for each one the front-end set up; lcore "
            "is the reactor that serves it.",
            labels=labels + ["queue", "lcore"])
        broken = prom_core.GaugeMetricFamily(
            _name("vhost_controller_broken"),
            "1 when the front-end broke the protocol and the session was stopped.",
            labels=labels)
        dirty = prom_core.GaugeMetricFamily(
            _name("vhost_controller_dirty_logging"),
            "1 while a live migration has the controller log dirty pages.", labels=labels)
        for c in engine.vhost_get_controllers():
            bdev = ((c.get("backend_specific") or {}).get("block") or {}).get("bdev", "")
            key = [c["ctrlr"], bdev]
            connected.add_metric(key, 1 if c.get("connected") else 0)
            if c.get("completed_ios") is not None:
                completed.add_metric(key, c["completed_ios"])
            if c.get("num_queues") is not None:
                queues.add_metric(key, c["num_queues"])
            if c.get("max_queues") is not None:
                max_queues.add_metric(key, c["max_queues"])
            qs = c.get("queues")
            if qs is not None:
                started.add_metric(key, sum(1 for q in qs if q.get("started")))
                # Per queue: only those the front-end set up (a controller
                # offers 16 by default; a guest often uses one or two).
                used = c.get("num_queues")
                for q in qs:
                    if used is not None and q["id"] >= used:
                        continue
                    queue.add_metric(key + [str(q["id"]), str(q.get("reactor_core", ""))],
                                     1 if q.get("started") else 0)
            broken.add_metric(key, 1 if c.get("broken") else 0)
            dirty.add_metric(key, 1 if c.get("dirty_logging") else 0)
        self._check_time(deadline)
        out.extend([connected, completed, queues, max_queues, started, queue, broken, dirty])


def make_registry(collector, process_metrics=True):
    """A registry of its own (never prometheus_client's global one) holding
    ``collector`` and, with ``process_metrics``, the process_* metrics of
    this process (CPU, memory, fds, start time)."""
    reg = prom_registry.CollectorRegistry(auto_describe=False)
    reg.register(collector)
    if process_metrics:
        from prometheus_client import process_collector
        process_collector.ProcessCollector(registry=reg)
    return reg


class _Handler(simple_server.WSGIRequestHandler):
    """No access log; idle connections are dropped."""

    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format, *args):
        pass


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    """One thread per request (daemon threads: a stuck client never holds
    the agent's exit), at most MAX_CONNECTIONS at once."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, family, address):
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def server_bind(self):
        # WSGIServer's would look the address up in DNS (getfqdn): a slow
        # resolver must not hold the agent's start.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        # A client that times out or goes away: not worth a traceback on stderr.
        LOG.debug("metrics: request from %s failed", client_address, exc_info=True)


def _resolve(address, port):
    """(family, sockaddr) to bind, as prometheus_client picks them."""
    infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


class Exporter:
    """The HTTP endpoint (any path, ``/metrics`` by convention) serving
    ``registry`` on ``address:port`` from a thread of this process."""

    # The port still held (an upgrade's previous process), the address not
    # yet configured, or its name not yet resolvable at boot.
    RETRY_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, socket.EAI_AGAIN)

    def __init__(self, address, port, registry, collector=None,
                 retry_s=BIND_RETRY_S, log_every_s=BIND_LOG_EVERY_S):
        self.address = address
        self.port = port
        self.registry = registry
        self.collector = collector
        self._retry_s = retry_s
        self._log_every_s = log_every_s
        self._httpd = None
        self._thread = None
        self._retrier = None
        self._stopping = threading.Event()
        self._mutex = threading.Lock()

    @property
    def listening(self):
        return self._httpd is not None

    @property
    def bound_port(self):
        httpd = self._httpd
        return httpd.server_address[1] if httpd is not None else None

    def _bind(self):
        family, sockaddr = _resolve(self.address, self.port)
        httpd = _Server(family, sockaddr)
        httpd.set_app(exposition.make_wsgi_app(self.registry))
        return httpd

    def _serve(self, httpd):
        with self._mutex:
            if self._stopping.is_set():
                httpd.server_close()
                return False
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S},
                name="metrics-http", daemon=True)
            self._thread.start()
            port = httpd.server_address[1]
        LOG.info("metrics: Prometheus exporter listening on %s port %d", self.address, port)
        return True

    def start(self):
        """Listen now, or keep trying in the background while the port is
        taken (True when it listens already).  Any other failure is logged:
        the agent serves without its exporter."""
        try:
            return self._serve(self._bind())
        except OSError as exc:
            if exc.errno not in self.RETRY_ERRNOS:
                LOG.error("metrics: cannot listen on %s port %s: %s; the agent serves "
                          "without its Prometheus exporter", self.address, self.port, exc)
                return False
            LOG.warning("metrics: %s port %s: %s; retrying until it is free (the "
                        "previous agent process may still hold it)", self.address,
                        self.port, exc.strerror or exc)
        self._retrier = threading.Thread(target=self._retry, name="metrics-bind",
                                         daemon=True)
        self._retrier.start()
        return False

    def _retry(self):
        last_log = time.monotonic()
        while not self._stopping.wait(self._retry_s):
            try:
                httpd = self._bind()
            except OSError as exc:
                if exc.errno not in self.RETRY_ERRNOS:
                    LOG.error("metrics: cannot listen on %s port %s: %s; the agent serves "
                              "without its Prometheus exporter", self.address, self.port,
                              exc)
                    return
                if time.monotonic() - last_log >= self._log_every_s:
                    last_log = time.monotonic()
                    LOG.warning("metrics: %s port %s still in use; still retrying",
                                self.address, self.port)
                continue
            self._serve(httpd)
            return

    def stop(self):
        """Close the listening socket (a new process may bind the port once
        this returns); a scrape reading the engine finishes first, and no
        later one touches it."""
        self._stopping.set()
        if self._retrier is not None:
            self._retrier.join()
            self._retrier = None
        if self.collector is not None:
            self.collector.close()
        with self._mutex:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            thread.join()
            LOG.info("metrics: exporter on %s port %d stopped", self.address,
                     httpd.server_address[1])


def start_exporter(engine_source, address, port, version=""):
    """An :class:`Exporter` of a new :class:`EngineCollector`, started."""
    collector = EngineCollector(engine_source, version=version)
    exporter = Exporter(address, port, make_registry(collector), collector=collector)
    exporter.start()
    return exporter
