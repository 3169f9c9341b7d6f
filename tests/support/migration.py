"""Live migration between two "hosts" on one machine, for e2e tests.

* ``Host(base_dir)``: a real ``spdk-backend-agent`` with its own state
  dir, RPC socket and vhost socket dir, i.e. one hypervisor host;
  ``serve_file(ctrlr, path, shared=True)`` / ``serve_rbd(ctrlr, pool,
  image, config)`` put a volume behind a controller, ``remove(ctrlr)``
  takes both away.
* ``migrate(src, uri)``: QMP ``migrate`` from a running QemuGuest to a
  QemuGuest started with ``incoming=uri``, throttled so that the guest's
  I/O happens while its RAM is copied; returns QEMU's final
  ``query-migrate`` (status, downtime, total-time) or raises.
* ``CompletionWatch``: samples the controllers' ``completed_ios`` on both
  hosts every few milliseconds; the longest interval in which neither grew
  is the I/O stall the guest saw (measured on the host: a TCG guest's
  clock stands still while QEMU has it paused for the switch-over).
"""

import os
import threading
import time

from tests.support import agent_proc
from tests.support import guest as guest_support


class MigrationError(Exception):
    pass


class Host:
    """One hypervisor host: an agent of its own."""

    def __init__(self, base_dir, env=None, **options):
        os.makedirs(str(base_dir), exist_ok=True)
        self.agent = agent_proc.AgentProcess(str(base_dir), **options)
        self.env = env
        self._bdev_delete = {}      # ctrlr -> the method that deletes its bdev

    def start(self):
        self.agent.start(env=self.env)
        return self

    def stop(self):
        try:
            self.agent.stop()
        finally:
            self.agent.kill9()

    def call(self, method, **params):
        with self.agent.client() as c:
            return c.call(method, params or None)

    def serve_file(self, ctrlr, path, shared=True, max_queues=None, cpumask=None,
                   packed_ring=False):
        """A uring bdev on path behind vhost-blk controller ctrlr; its socket path."""
        self.call("bdev_uring_create", name=ctrlr + "-bdev", filename=str(path),
                  shared=shared)
        self._bdev_delete[ctrlr] = "bdev_uring_delete"
        return self.add_controller(ctrlr, ctrlr + "-bdev", max_queues, cpumask, packed_ring)

    def serve_rbd(self, ctrlr, pool, image, config, max_queues=None):
        """An rbd bdev on pool/image (config: bdev_rbd_create's) behind ctrlr."""
        self.call("bdev_rbd_create", name=ctrlr + "-bdev", pool_name=pool, rbd_name=image,
                  block_size=512, config=config)
        self._bdev_delete[ctrlr] = "bdev_rbd_delete"
        return self.add_controller(ctrlr, ctrlr + "-bdev", max_queues)

    def add_controller(self, ctrlr, bdev, max_queues=None, cpumask=None, packed_ring=False):
        params = {"ctrlr": ctrlr, "dev_name": bdev}
        if max_queues:
            params["max_queues"] = max_queues
        if cpumask:
            params["cpumask"] = cpumask
        if packed_ring:
            params["packed_ring"] = True
        self.call("vhost_create_blk_controller", **params)
        return self.socket(ctrlr)

    def remove(self, ctrlr):
        """Delete ctrlr and the bdev serve_* made for it."""
        self.call("vhost_delete_controller", ctrlr=ctrlr)
        self.call(self._bdev_delete.pop(ctrlr, "bdev_uring_delete"), name=ctrlr + "-bdev")

    def socket(self, ctrlr):
        return "%s/%s" % (self.agent.vhost_socket_dir, ctrlr)

    def controller(self, ctrlr):
        return self.call("vhost_get_controllers", name=ctrlr)[0]


def migrate(src, uri, max_bandwidth=32 << 20, downtime_limit_ms=300, timeout=240,
            on_active=None):
    """Migrate guest src to uri (a QemuGuest started with incoming=uri).

    on_active(info) is called on every poll while the migration runs; it
    may cancel it.  Returns the last query-migrate answer once the status
    is final ('completed' or 'cancelled'); raises MigrationError on
    'failed' or after timeout (the migration is cancelled then).
    """
    qmp = src.qmp
    qmp.execute("migrate-set-parameters", **{"max-bandwidth": max_bandwidth,
                                             "downtime-limit": downtime_limit_ms})
    qmp.execute("migrate", uri=uri)
    deadline = time.monotonic() + timeout
    while True:
        info = qmp.execute("query-migrate")
        status = info.get("status")
        if status in ("completed", "cancelled"):
            return info
        if status == "failed":
            raise MigrationError("migration failed: %s" % info.get("error-desc", info))
        if time.monotonic() > deadline:
            qmp.execute("migrate_cancel")
            raise MigrationError("migration not done in %ss: %s" % (timeout, info))
        if on_active is not None and status == "active":
            on_active(info)
        time.sleep(0.05)


def incoming_guest(image, workdir, disks, uri, **kw):
    """The destination QEMU: same machine and devices, paused on -incoming."""
    return guest_support.QemuGuest(image, workdir, disks=disks, incoming=uri, **kw).start()


class CompletionWatch:
    """Sample completed_ios of (host, ctrlr) pairs; find the longest stall."""

    def __init__(self, targets, interval=0.005):
        self.targets = list(targets)
        self.interval = interval
        self.changes = []       # monotonic times at which the total grew
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._clients = {}

    def _total(self):
        total = 0
        for host, ctrlr in self.targets:
            client = self._clients.setdefault(id(host), host.agent.client(timeout=10))
            try:
                total += client.call("vhost_get_controllers", name=ctrlr)[0]["completed_ios"]
            except Exception:
                # No controller (yet, or any more) on that host: it counts nothing.
                client.close()
                del self._clients[id(host)]
        return total

    def _run(self):
        last = self._total()
        while not self._stop.is_set():
            now = self._total()
            if now != last:
                self.changes.append(time.monotonic())
                last = now
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        for client in self._clients.values():
            client.close()

    def longest_gap(self, start=None, end=None):
        """Longest interval without a completion between start and end (seconds)."""
        times = [t for t in self.changes
                 if (start is None or t >= start) and (end is None or t <= end)]
        if len(times) < 2:
            raise MigrationError("fewer than two completions were seen")
        return max(b - a for a, b in zip(times, times[1:]))
