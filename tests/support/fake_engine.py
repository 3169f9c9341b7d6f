"""An in-memory stand-in for spdk_backend.engine.Engine (unit tests only).

It follows the engine's contract (SPDK result shapes, typed errors with
errno) closely enough to test the agent's server, dispatch, persistence and
CLI without the native extension; the functional tests run the real engine.
"""

import errno
import threading
import uuid as uuidlib

from spdk_backend import exception


def _err(code, op, reason):
    return exception.from_errno(code, op=op, reason=reason)


class FakeEngine:
    def __init__(self, core_mask="0x1", max_delay_us=1000, vhost_socket_dir=None,
                 no_pin=False):
        self.cores = [0]
        self.tick_rate = 1000000
        self.vhost_socket_dir = vhost_socket_dir
        self.running = False
        self.bdevs = {}
        self.ctrlrs = {}
        self.ticks = 0
        self.calls = []
        self.clusters = {}
        # Controllers a front-end holds: deleted only with force.
        self.busy_ctrlrs = set()
        self.block = threading.Event()  # cleared -> engine calls hang (for tests)
        self.block.set()

    def start(self):
        self.running = True
        return self

    def stop(self):
        self.running = False

    def _wait(self, op):
        self.calls.append(op)
        self.block.wait(30)

    def reactors(self):
        self.ticks += 1000
        return [{"lcore": 0, "name": "reactor_0", "busy": self.ticks // 4,
                 "idle": self.ticks - self.ticks // 4, "sleeps": 1, "wakeups": 1,
                 "msgs": 3, "pollers": [{"name": "p", "period_us": 0, "run_count": 1,
                                         "busy_count": 0}]}]

    def _add(self, op, name, module, num_blocks, block_size, uuid, **extra):
        self._wait(op)
        if name in self.bdevs:
            raise _err(errno.EEXIST, op, "bdev %s already exists" % name)
        if block_size not in (512, 1024, 2048, 4096):
            raise _err(errno.EINVAL, op, "block_size %d is invalid" % block_size)
        self.bdevs[name] = {"name": name, "module": module, "num_blocks": num_blocks,
                            "block_size": block_size, "uuid": uuid or str(uuidlib.uuid4()),
                            "qos": {}, "ops": 0, **extra}
        return name

    def _del(self, op, name, module):
        self._wait(op)
        b = self.bdevs.get(name)
        if b is None or b["module"] != module:
            raise _err(errno.ENODEV, op, "bdev %s does not exist" % name)
        if any(c["bdev"] == name for c in self.ctrlrs.values()):
            raise _err(errno.EBUSY, op, "bdev %s is claimed" % name)
        del self.bdevs[name]

    def bdev_malloc_create(self, name, num_blocks, block_size, uuid=None,
                           physical_block_size=0, hugepages=False):
        return self._add("bdev_malloc_create", name, "malloc", num_blocks, block_size, uuid)

    def bdev_malloc_delete(self, name):
        self._del("bdev_malloc_delete", name, "malloc")

    def bdev_null_create(self, name, num_blocks, block_size, uuid=None,
                         physical_block_size=0):
        return self._add("bdev_null_create", name, "null", num_blocks, block_size, uuid)

    def bdev_null_delete(self, name):
        self._del("bdev_null_delete", name, "null")

    def bdev_null_resize(self, name, new_size_mb):
        b = self.bdevs.get(name)
        if b is None or b["module"] != "null":
            raise _err(errno.ENODEV, "bdev_null_resize", "bdev %s does not exist" % name)
        b["num_blocks"] = new_size_mb * 1048576 // b["block_size"]

    def bdev_uring_create(self, name, filename, block_size=0, uuid=None, shared=False):
        import os
        if not os.path.exists(filename):
            raise _err(errno.ENOENT, "bdev_uring_create", "%s: no such file" % filename)
        size = os.path.getsize(filename)
        bs = block_size or 512
        return self._add("bdev_uring_create", name, "uring", size // bs, bs, uuid,
                         filename=filename, shared=bool(shared))

    def bdev_uring_delete(self, name):
        self._del("bdev_uring_delete", name, "uring")

    def bdev_uring_rescan(self, name):
        if name not in self.bdevs:
            raise _err(errno.ENODEV, "bdev_uring_rescan", "bdev %s does not exist" % name)

    def bdev_rbd_register_cluster(self, name, user_id=None, config_param=None,
                                  config_file=None, key_file=None):
        if name in self.clusters:
            raise _err(errno.EEXIST, "bdev_rbd_register_cluster",
                       "cluster %s already exists" % name)
        self.clusters[name] = {"cluster_name": name, "user_id": user_id,
                               "config_param": config_param, "config_file": config_file,
                               "key_file": key_file}

    def bdev_rbd_unregister_cluster(self, name):
        if name not in self.clusters:
            raise _err(errno.ENOENT, "bdev_rbd_unregister_cluster",
                       "cluster %s does not exist" % name)
        if any(b.get("cluster_name") == name for b in self.bdevs.values()):
            raise _err(errno.EBUSY, "bdev_rbd_unregister_cluster",
                       "cluster %s is in use" % name)
        del self.clusters[name]

    def bdev_rbd_get_clusters_info(self, name=None):
        if name is not None and name not in self.clusters:
            raise _err(errno.ENOENT, "bdev_rbd_get_clusters_info",
                       "cluster %s does not exist" % name)
        return [dict(c) for n, c in self.clusters.items() if name in (None, n)]

    def bdev_rbd_create(self, name, pool_name, rbd_name, block_size=512, user_id=None,
                        config=None, config_file=None, key_file=None, cluster_name=None,
                        uuid=None, read_only=False):
        if cluster_name is not None and cluster_name not in self.clusters:
            raise _err(errno.ENOENT, "bdev_rbd_create",
                       "cluster %s does not exist" % cluster_name)
        return self._add("bdev_rbd_create", name, "rbd", 8192, block_size, uuid,
                         cluster_name=cluster_name)

    def bdev_rbd_delete(self, name):
        self._del("bdev_rbd_delete", name, "rbd")

    def bdev_rbd_resize(self, name, new_size):
        b = self.bdevs.get(name)
        if b is None or b["module"] != "rbd":
            raise _err(errno.ENODEV, "bdev_rbd_resize", "bdev %s does not exist" % name)
        b["num_blocks"] = new_size * 1048576 // b["block_size"]

    def bdev_rbd_rescan(self, name):
        if name not in self.bdevs:
            raise _err(errno.ENODEV, "bdev_rbd_rescan", "bdev %s does not exist" % name)

    def bdev_get_bdevs(self, name=None):
        self._wait("bdev_get_bdevs")
        if name is not None:
            if name not in self.bdevs:
                raise _err(errno.ENODEV, "bdev_get_bdevs", "bdev %s does not exist" % name)
            items = [self.bdevs[name]]
        else:
            items = list(self.bdevs.values())
        return [{"name": b["name"], "aliases": [], "product_name": b["module"] + " disk",
                 "block_size": b["block_size"], "num_blocks": b["num_blocks"],
                 "uuid": b["uuid"], "claimed": any(c["bdev"] == b["name"]
                                                   for c in self.ctrlrs.values()),
                 "assigned_rate_limits": dict({"rw_ios_per_sec": 0, "rw_mbytes_per_sec": 0,
                                               "r_mbytes_per_sec": 0,
                                               "w_mbytes_per_sec": 0}, **b["qos"]),
                 "supported_io_types": {"read": True, "write": True},
                 "driver_specific": {}} for b in items]

    def bdev_get_iostat(self, name=None):
        names = [name] if name else list(self.bdevs)
        out = []
        for n in names:
            if n not in self.bdevs:
                raise _err(errno.ENODEV, "bdev_get_iostat", "bdev %s does not exist" % n)
            self.bdevs[n]["ops"] += 100
            out.append({"name": n, "num_read_ops": self.bdevs[n]["ops"],
                        "num_write_ops": 0})
        self.ticks += 500000
        return {"tick_rate": self.tick_rate, "ticks": self.ticks, "bdevs": out}

    def bdev_set_qos_limit(self, name, **limits):
        if name not in self.bdevs:
            raise _err(errno.ENODEV, "bdev_set_qos_limit", "bdev %s does not exist" % name)
        self.bdevs[name]["qos"].update(limits)

    def vhost_create_blk_controller(self, ctrlr, dev_name, cpumask=None, readonly=False,
                                    max_queues=0, serial=None, packed_ring=False):
        self._wait("vhost_create_blk_controller")
        if ctrlr in self.ctrlrs:
            raise _err(errno.EEXIST, "vhost_create_blk_controller",
                       "controller %s already exists" % ctrlr)
        if dev_name not in self.bdevs:
            raise _err(errno.ENODEV, "vhost_create_blk_controller",
                       "bdev %s does not exist" % dev_name)
        self.ctrlrs[ctrlr] = {"bdev": dev_name, "cpumask": cpumask or "0x1",
                              "readonly": readonly, "packed_ring": packed_ring, "delay": 0,
                              "iops": 0, "done": 0}

    def vhost_delete_controller(self, ctrlr, force=False):
        self._wait("vhost_delete_controller")
        if ctrlr not in self.ctrlrs:
            raise _err(errno.ENODEV, "vhost_delete_controller",
                       "controller %s does not exist" % ctrlr)
        if ctrlr in self.busy_ctrlrs and not force:
            raise _err(errno.EBUSY, "vhost_delete_controller",
                       "controller %s has a front-end" % ctrlr)
        self.busy_ctrlrs.discard(ctrlr)
        del self.ctrlrs[ctrlr]

    def vhost_get_controllers(self, name=None):
        if name is not None and name not in self.ctrlrs:
            raise _err(errno.ENODEV, "vhost_get_controllers",
                       "controller %s does not exist" % name)
        out = []
        for n, c in self.ctrlrs.items():
            if name is not None and n != name:
                continue
            c["done"] += 50
            out.append({"ctrlr": n, "cpumask": c["cpumask"], "delay_base_us": c["delay"],
                        "iops_threshold": c["iops"],
                        "socket": "%s/%s" % (self.vhost_socket_dir, n),
                        "backend_specific": {"block": {"readonly": c["readonly"],
                                                       "bdev": c["bdev"]}},
                        "connected": False, "num_queues": 0, "completed_ios": c["done"]})
        return out

    def vhost_controller_set_coalescing(self, ctrlr, delay_base_us, iops_threshold):
        if ctrlr not in self.ctrlrs:
            raise _err(errno.ENODEV, "vhost_controller_set_coalescing",
                       "controller %s does not exist" % ctrlr)
        self.ctrlrs[ctrlr].update(delay=delay_base_us, iops=iops_threshold)


class VolumeFakeEngine(FakeEngine):
    """A FakeEngine whose bdevs also say, as the engine's do, their
    ``module`` and the ``driver_specific`` facts the volume commands and
    backends read (a uring bdev's file, an rbd bdev's cluster)."""

    def bdev_get_bdevs(self, name=None):
        out = super().bdev_get_bdevs(name)
        for bdev in out:
            b = self.bdevs[bdev["name"]]
            bdev["module"] = b["module"]
            if b["module"] == "uring":
                bdev["driver_specific"] = {"uring": {"filename": b["filename"],
                                                     "shared": b["shared"]}}
            elif b["module"] == "rbd":
                bdev["driver_specific"] = {"rbd": {"cluster_name": b["cluster_name"]}}
        return out


def agent_opts(base_dir, **overrides):
    """Agent options (like conf.agent) rooted in ``base_dir``."""
    import os
    import types
    opts = dict(core_mask="0x1", max_delay_us=100, no_pin=True,
                rpc_socket=os.path.join(base_dir, "rpc.sock"), rpc_socket_mode=0o660,
                rpc_socket_group=None, rpc_send_timeout=30,
                vhost_socket_dir=os.path.join(base_dir, "vhost"),
                state_dir=os.path.join(base_dir, "state"), log_file=None, debug=False)
    opts.update(overrides)
    return types.SimpleNamespace(**opts)


class InProcessAgent:
    """The real agent service (server, dispatch, state) over a FakeEngine,
    serving in a background thread; for unit tests of everything but the
    engine."""

    def __init__(self, base_dir, engine=None, **overrides):
        self.opts = agent_opts(base_dir, **overrides)
        self.engine = engine
        self.agent = None
        self._thread = None
        self._error = None

    def _factory(self, opts):
        if self.engine is None:
            self.engine = FakeEngine(vhost_socket_dir=opts.vhost_socket_dir)
        return self.engine

    def start(self):
        import asyncio
        import os
        import time
        from spdk_backend.agent import service
        self.agent = service.Agent(self.opts, engine_factory=self._factory)
        self.agent.prepare()

        def run():
            try:
                asyncio.run(self.agent.serve(handle_signals=False))
            except BaseException as exc:  # surfaced by stop()
                self._error = exc

        self._thread = threading.Thread(target=run, name="test-agent", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not os.path.exists(self.opts.rpc_socket):
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("in-process agent did not start: %r" % self._error)
            time.sleep(0.01)
        return self

    def stop(self):
        if self.agent is None:
            return
        import time
        deadline = time.monotonic() + 10
        while self.agent._stop is None and self._thread.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        self.agent.request_stop() if self.agent._stop is not None else None
        self._thread.join(10)
        self.agent.shutdown()
        self.agent = None
        if self._error is not None:
            raise self._error

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
