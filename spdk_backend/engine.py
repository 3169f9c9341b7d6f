"""Python face of the native polling engine (``spdk_backend._native``).

One :class:`Engine` per process (the C engine is process-wide).  Every call
here is a synchronous control-plane call: the C side posts a message to the
owning reactor and waits, with the GIL released, so Python never blocks a
reactor and a reactor never waits for Python.  The C side copies what it
hands to a reactor (names, data to write) and reads into memory of its own,
so a call that gives up waiting (EngineTimeout) leaves nothing of Python's
in use and Python may free its buffers at once.

Every C return code goes through :func:`_check`, which raises the typed
exceptions of :mod:`spdk_backend.exception`.  Results use SPDK's JSON-RPC
shapes so the agent can return them as they are.
"""

import errno
import grp
import json
import os
import stat
import threading
import weakref

from spdk_backend import exception
from spdk_backend._native import ffi, lib

# The order of supported_io_types in struct sb_bdev_info, with SPDK's names.
_IO_TYPE_NAMES = ("read", "write", "flush", "unmap", "write_zeroes", "reset")
_QOS_NAMES = ("rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec",
              "w_mbytes_per_sec")
_UINT64_MAX = (1 << 64) - 1
_LOG_LEVELS = {"ERROR": 0, "WARNING": 1, "NOTICE": 2, "INFO": 3, "DEBUG": 4}


def _check(rc, op, **reason_kw):
    """Raise the typed exception for a negative C return code."""
    if rc >= 0:
        return rc
    reason = reason_kw.get("reason")
    if reason is None:
        reason = "%s (%s)" % (exception.strerror(-rc), _describe(rc, reason_kw))
    raise exception.from_errno(rc, op=op, reason=reason)


def _describe(rc, kw):
    return ", ".join("%s=%s" % (k, v) for k, v in sorted(kw.items())) or "no detail"


def _s(cdata):
    return ffi.string(cdata).decode("utf-8", "replace")


def _b(value):
    """Encode an optional str for a const char * parameter (keeps it alive)."""
    if value is None:
        return ffi.NULL
    if not isinstance(value, str):
        raise exception.InvalidInput(reason="expected a string, got %r" % (value,))
    if "\0" in value:
        raise exception.InvalidInput(reason="NUL byte in %r" % (value,))
    return ffi.new("char[]", value.encode("utf-8"))


def _u(value, name, bits=64):
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidInput(reason="%s must be an integer, got %r" % (name, value))
    if value < 0 or value >= (1 << bits):
        raise exception.InvalidInput(reason="%s out of range: %d" % (name, value))
    return value


def _resolve_gid(group):
    """A numeric gid for a group name or number; None for None/empty."""
    if group is None or group == "":
        return None
    if isinstance(group, int):
        return group
    try:
        return int(group)
    except ValueError:
        pass
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise exception.InvalidInput(
            reason="vhost_socket_group %r is not a known group" % (group,)) from None


def parse_core_mask(mask):
    """CPU numbers of an SPDK-style core mask ("0x3", "[0,1]", "[0-3]")."""
    cores = ffi.new("uint32_t[]", lib.SB_MAX_REACTORS)
    count = ffi.new("uint32_t *")
    rc = lib.sb_parse_core_mask(_b(mask), cores, lib.SB_MAX_REACTORS, count)
    _check(rc, "parse core mask", reason="invalid core mask %r: %s" % (mask, os.strerror(-rc))
           if rc < 0 else None)
    return [cores[i] for i in range(count[0])]


class Engine:
    """The native engine: reactors, bdevs and vhost-blk controllers."""

    _lock = threading.Lock()
    _active = None

    def __init__(self, core_mask="0x1", max_delay_us=1000, vhost_socket_dir=None,
                 no_pin=False, spin_us=0, vhost_socket_mode=None, vhost_socket_group=None):
        self.core_mask = core_mask
        self.max_delay_us = _u(max_delay_us, "max_delay_us")
        self.spin_us = _u(spin_us, "spin_us")
        self.vhost_socket_dir = vhost_socket_dir
        # Who may connect to controller sockets (QEMU often runs as its own
        # user): None keeps the owner-only mode the C side creates them with.
        self.vhost_socket_mode = vhost_socket_mode
        self.vhost_socket_gid = _resolve_gid(vhost_socket_group)
        self.no_pin = bool(no_pin)
        self.cores = parse_core_mask(core_mask)
        self._running = False
        self._watches = weakref.WeakSet()

    # ---- lifecycle ----

    def start(self):
        with Engine._lock:
            if Engine._active is not None:
                raise exception.AlreadyExists(errno=17, op="engine start",
                                              reason="an engine already runs in this process")
            opts = ffi.new("struct sb_engine_opts *")
            lib.sb_engine_opts_init(opts)
            mask = _b(self.core_mask)
            opts.core_mask = mask
            opts.max_delay_us = self.max_delay_us
            opts.spin_us = self.spin_us
            opts.no_pin = self.no_pin
            _check(lib.sb_engine_start(opts), "engine start", core_mask=self.core_mask)
            Engine._active = self
            self._running = True
        if self.vhost_socket_dir is not None:
            try:
                self.vhost_set_socket_dir(self.vhost_socket_dir)
            except Exception:
                self.stop()
                raise
        return self

    def stop(self):
        with Engine._lock:
            if not self._running:
                return
            # A watch refers to a reactor; free it while that reactor exists.
            for watch in list(self._watches):
                watch.close()
            lib.sb_engine_stop()
            self._running = False
            Engine._active = None

    @property
    def running(self):
        return self._running

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _require_running(self, op):
        if not self._running:
            raise exception.EngineNotRunning(op=op)

    @property
    def tick_rate(self):
        return lib.sb_get_ticks_hz()

    @staticmethod
    def ticks():
        return lib.sb_get_ticks()

    # ---- reactors ----

    def reactors(self):
        """Per-reactor counters and pollers (feeds framework_get_reactors)."""
        self._require_running("reactors")
        out = []
        st = ffi.new("struct sb_reactor_stats *")
        for idx in range(lib.sb_reactor_count()):
            _check(lib.sb_reactor_get_stats(idx, st), "reactor stats", index=idx)
            out.append({
                "lcore": st.core,
                "name": _s(st.name),
                "busy": st.busy_ticks,
                "idle": st.idle_ticks,
                "sleeps": st.sleeps,
                "wakeups": st.wakeups,
                "msgs": st.msgs,
                "pollers": self._pollers(idx, st.poller_count),
            })
        return out

    def _pollers(self, idx, hint):
        cap = max(hint, 8)
        while True:
            arr = ffi.new("struct sb_poller_info[]", cap)
            count = ffi.new("uint32_t *")
            _check(lib.sb_reactor_get_pollers(idx, arr, cap, count), "reactor pollers",
                   index=idx)
            if count[0] <= cap:
                return [{"name": _s(p.name), "period_us": p.period_us,
                         "run_count": p.run_count, "busy_count": p.busy_count}
                        for p in arr[0:count[0]]]
            cap = count[0]

    # ---- bdevs ----

    def bdev_malloc_create(self, name, num_blocks, block_size, uuid=None,
                           physical_block_size=0, hugepages=False):
        self._require_running("bdev_malloc_create")
        opts = ffi.new("struct sb_malloc_opts *")
        keep = [_b(name), _b(uuid)]
        opts.name, opts.uuid = keep
        opts.num_blocks = _u(num_blocks, "num_blocks")
        opts.block_size = _u(block_size, "block_size", 32)
        opts.physical_block_size = _u(physical_block_size, "physical_block_size", 32)
        opts.hugepages = bool(hugepages)
        _check(lib.sb_bdev_malloc_create(opts), "bdev_malloc_create", name=name,
               num_blocks=num_blocks, block_size=block_size)
        return name

    def bdev_malloc_delete(self, name):
        self._require_running("bdev_malloc_delete")
        _check(lib.sb_bdev_malloc_delete(_b(name)), "bdev_malloc_delete", name=name)

    def bdev_null_create(self, name, num_blocks, block_size, uuid=None,
                         physical_block_size=0):
        self._require_running("bdev_null_create")
        opts = ffi.new("struct sb_null_opts *")
        keep = [_b(name), _b(uuid)]
        opts.name, opts.uuid = keep
        opts.num_blocks = _u(num_blocks, "num_blocks")
        opts.block_size = _u(block_size, "block_size", 32)
        opts.physical_block_size = _u(physical_block_size, "physical_block_size", 32)
        _check(lib.sb_bdev_null_create(opts), "bdev_null_create", name=name,
               num_blocks=num_blocks, block_size=block_size)
        return name

    def bdev_null_delete(self, name):
        self._require_running("bdev_null_delete")
        _check(lib.sb_bdev_null_delete(_b(name)), "bdev_null_delete", name=name)

    def bdev_null_resize(self, name, new_size_mb):
        self._require_running("bdev_null_resize")
        _check(lib.sb_bdev_null_resize(_b(name), _u(new_size_mb, "new_size")),
               "bdev_null_resize", name=name, new_size=new_size_mb)

    def bdev_uring_create(self, name, filename, block_size=0, uuid=None, shared=False):
        """Serve a file or block device; it stays flock(2)ed while served:
        exclusively, or with a lock other ``shared`` servers share."""
        self._require_running("bdev_uring_create")
        opts = ffi.new("struct sb_uring_opts *")
        keep = [_b(name), _b(filename), _b(uuid)]
        opts.name, opts.filename, opts.uuid = keep
        opts.block_size = _u(block_size, "block_size", 32)
        opts.shared = bool(shared)
        rc = lib.sb_bdev_uring_create(opts)
        detail = {"name": name, "filename": filename}
        if rc == -errno.EBUSY:
            if shared:
                detail["reason"] = ("%s is served by another bdev or agent that did not "
                                    "create it with shared: that one holds the file alone"
                                    % filename)
            else:
                detail["reason"] = ("%s is served already by another bdev or agent (on "
                                    "this host, or on another one that sees the same "
                                    "storage): a file may be served twice only when every "
                                    "server creates it with shared (storage that both "
                                    "hosts of a live migration see)" % filename)
        _check(rc, "bdev_uring_create", **detail)
        return name

    def bdev_uring_delete(self, name):
        self._require_running("bdev_uring_delete")
        _check(lib.sb_bdev_uring_delete(_b(name)), "bdev_uring_delete", name=name)

    def bdev_uring_rescan(self, name):
        self._require_running("bdev_uring_rescan")
        _check(lib.sb_bdev_uring_rescan(_b(name)), "bdev_uring_rescan", name=name)

    # rbd: every call may block on the Ceph cluster (connect, open, resize).

    @staticmethod
    def _rbd_cluster_opts(opts, keep, name=None, user_id=None, config=None,
                          config_file=None, key_file=None):
        """Fill a struct sb_rbd_cluster_opts; ``keep`` holds the C strings alive."""
        strs = [_b(name), _b(user_id), _b(config_file), _b(key_file)]
        keep += strs
        opts.name, opts.user_id, opts.config_file, opts.key_file = strs
        opts.config = ffi.NULL
        if config:
            if not isinstance(config, dict):
                raise exception.InvalidInput(reason="rbd config must be a mapping of "
                                                    "Ceph option names to values")
            items = [_b(str(x)) for kv in sorted(config.items()) for x in kv]
            arr = ffi.new("char *[]", items + [ffi.NULL])
            keep += items + [arr]
            opts.config = arr

    def bdev_rbd_register_cluster(self, name, user_id=None, config_param=None,
                                  config_file=None, key_file=None):
        self._require_running("bdev_rbd_register_cluster")
        opts = ffi.new("struct sb_rbd_cluster_opts *")
        keep = []
        self._rbd_cluster_opts(opts, keep, name, user_id, config_param, config_file, key_file)
        _check(lib.sb_bdev_rbd_register_cluster(opts), "bdev_rbd_register_cluster",
               name=name)
        return name

    def bdev_rbd_unregister_cluster(self, name):
        self._require_running("bdev_rbd_unregister_cluster")
        _check(lib.sb_bdev_rbd_unregister_cluster(_b(name)), "bdev_rbd_unregister_cluster",
               name=name)

    def bdev_rbd_get_clusters_info(self, name=None):
        """Registered clusters, SPDK's shape (plus ``bdevs``: how many use it)."""
        self._require_running("bdev_rbd_get_clusters_info")
        cname, size = _b(name), 4096
        while True:
            buf = ffi.new("char[]", size)
            rc = _check(lib.sb_bdev_rbd_get_clusters_info(cname, buf, size),
                        "bdev_rbd_get_clusters_info", name=name)
            if rc < size:
                return json.loads(_s(buf))
            size = rc + 1

    def bdev_rbd_create(self, name, pool_name, rbd_name, block_size=512, user_id=None,
                        config=None, config_file=None, key_file=None, cluster_name=None,
                        uuid=None, read_only=False):
        self._require_running("bdev_rbd_create")
        opts = ffi.new("struct sb_rbd_opts *")
        keep = [_b(name), _b(pool_name), _b(rbd_name), _b(cluster_name), _b(uuid)]
        opts.name, opts.pool_name, opts.rbd_name, opts.cluster_name, opts.uuid = keep
        opts.block_size = _u(block_size, "block_size", 32)
        opts.read_only = bool(read_only)
        self._rbd_cluster_opts(opts.cluster, keep, None, user_id, config, config_file,
                               key_file)
        _check(lib.sb_bdev_rbd_create(opts), "bdev_rbd_create", name=name,
               image="%s/%s" % (pool_name, rbd_name))
        return name

    def bdev_rbd_delete(self, name):
        self._require_running("bdev_rbd_delete")
        _check(lib.sb_bdev_rbd_delete(_b(name)), "bdev_rbd_delete", name=name)

    def bdev_rbd_resize(self, name, new_size):
        """Grow the image to ``new_size`` MiB (SPDK's unit)."""
        self._require_running("bdev_rbd_resize")
        _check(lib.sb_bdev_rbd_resize(_b(name), _u(new_size, "new_size")),
               "bdev_rbd_resize", name=name, new_size=new_size)

    def bdev_rbd_rescan(self, name):
        """Pick up a size change made by another client of the image."""
        self._require_running("bdev_rbd_rescan")
        _check(lib.sb_bdev_rbd_rescan(_b(name)), "bdev_rbd_rescan", name=name)

    def bdev_get_bdevs(self, name=None):
        """bdevs in SPDK's bdev_get_bdevs shape; NotFound for an unknown name."""
        self._require_running("bdev_get_bdevs")
        if name is not None:
            info = ffi.new("struct sb_bdev_info *")
            _check(lib.sb_bdev_ctl_get_info(_b(name), info), "bdev_get_bdevs", name=name,
                   reason="bdev %s does not exist" % name)
            return [_bdev_dict(info)]
        cap = 64
        while True:
            arr = ffi.new("struct sb_bdev_info[]", cap)
            count = ffi.new("uint32_t *")
            _check(lib.sb_bdev_ctl_list(arr, cap, count), "bdev_get_bdevs")
            if count[0] <= cap:
                return [_bdev_dict(arr[i]) for i in range(count[0])]
            cap = count[0] + 16

    def bdev_get_iostat(self, name=None):
        """SPDK's bdev_get_iostat result: tick_rate, ticks, bdevs[...]."""
        self._require_running("bdev_get_iostat")
        names = [name] if name is not None else [b["name"] for b in self.bdev_get_bdevs()]
        st = ffi.new("struct sb_bdev_iostat *")
        bdevs = []
        for n in names:
            rc = lib.sb_bdev_ctl_get_iostat(_b(n), st)
            if rc == -19 and name is None:
                continue  # deleted between the list and the read
            _check(rc, "bdev_get_iostat", name=n, reason="bdev %s does not exist" % n
                   if rc == -19 else None)
            bdevs.append(_iostat_dict(st))
        return {"tick_rate": lib.sb_bdev_ticks_hz(), "ticks": lib.sb_get_ticks(),
                "bdevs": bdevs}

    def bdev_set_qos_limit(self, name, rw_ios_per_sec=None, rw_mbytes_per_sec=None,
                           r_mbytes_per_sec=None, w_mbytes_per_sec=None):
        self._require_running("bdev_set_qos_limit")
        given = (rw_ios_per_sec, rw_mbytes_per_sec, r_mbytes_per_sec, w_mbytes_per_sec)
        if all(v is None for v in given):
            raise exception.InvalidInput(reason="bdev_set_qos_limit needs at least one limit")
        limits = ffi.new("uint64_t[4]")
        for i, (key, value) in enumerate(zip(_QOS_NAMES, given)):
            limits[i] = _UINT64_MAX if value is None else _u(value, key)
        _check(lib.sb_bdev_ctl_set_qos(_b(name), limits), "bdev_set_qos_limit", name=name)

    # ---- I/O from the control plane (tests, benchmarks, diagnostics) ----

    def bdev_io(self, name, op, offset=0, length=0, data=None, reactor=0):
        """One synchronous I/O on a reactor.

        op is "read" (returns bytes), "write" (data), "flush", "unmap",
        "write_zeroes" or "reset".  A failed I/O raises EngineError with the
        I/O's errno (EIO, ENOSPC, ...).
        """
        self._require_running("bdev_io")
        types = {"read": lib.SB_BDEV_IO_READ, "write": lib.SB_BDEV_IO_WRITE,
                 "flush": lib.SB_BDEV_IO_FLUSH, "unmap": lib.SB_BDEV_IO_UNMAP,
                 "write_zeroes": lib.SB_BDEV_IO_WRITE_ZEROES, "reset": lib.SB_BDEV_IO_RESET}
        if op not in types:
            raise exception.InvalidInput(reason="unknown I/O type %r" % (op,))
        buf = ffi.NULL
        if op == "write":
            if data is None:
                raise exception.InvalidInput(reason="write needs data")
            length = len(data)
            buf = ffi.from_buffer(data)
        elif op == "read":
            out = bytearray(_u(length, "length"))
            buf = ffi.from_buffer(out)
        rc = lib.sb_bdev_ctl_io(_b(name), _u(reactor, "reactor", 32), types[op],
                                _u(offset, "offset"), _u(length, "length"), buf)
        if rc < 0:
            # The I/O's own status, ETIMEDOUT included (e.g. librados' op
            # timeout); -SB_EWAITER_GAVE_UP (EngineTimeout) when nobody waited
            # for it any more (it may still complete, into the call's memory).
            raise exception.from_io_errno(rc, name, op, offset)
        return bytes(out) if op == "read" else None

    def run_workload(self, name, rw="randread", io_size=4096, qd=32, seconds=1.0,
                     core_mask=None, rwmixread=70, offset_blocks=0, num_blocks=0, seed=1):
        """Run the engine's bdevperf-like workload and return its result.

        rw "verify" writes a pattern over the range and reads it back
        (seconds ignored); the result counts verify_failures.
        """
        self._require_running("run_workload")
        opts = ffi.new("struct sb_workload_opts *")
        keep = [_b(name), _b(core_mask), _b(rw)]
        opts.bdev_name, opts.core_mask, opts.rw = keep
        opts.rwmixread = _u(rwmixread, "rwmixread", 32)
        opts.io_size = _u(io_size, "io_size", 32)
        opts.qd = _u(qd, "qd", 32)
        opts.run_us = int(seconds * 1e6)
        opts.offset_blocks = _u(offset_blocks, "offset_blocks")
        opts.num_blocks = _u(num_blocks, "num_blocks")
        opts.seed = _u(seed, "seed")
        res = ffi.new("struct sb_workload_result *")
        rc = lib.sb_workload_run(opts, res)
        # The run had seconds + 60 s (verify: an hour) to finish: after that
        # -SB_EWAITER_GAVE_UP (EngineTimeout); its I/O errors are counted in
        # the result, never returned.
        _check(rc, "workload on %s" % name, rw=rw)
        return {f: getattr(res, f) for f in (
            "ios", "read_ios", "write_ios", "errors", "first_error", "verify_failures",
            "seconds", "iops", "lat_mean_us", "lat_p50_us", "lat_p99_us", "lat_p999_us")}

    def bdev_watch(self, name, reactor=0):
        """A BdevWatch counting the RESIZE/REMOVE events of one descriptor."""
        self._require_running("bdev_watch")
        watch = BdevWatch(name, reactor)
        self._watches.add(watch)
        return watch

    # ---- vhost ----

    def vhost_set_socket_dir(self, path):
        self._require_running("vhost_set_socket_dir")
        os.makedirs(path, mode=0o700, exist_ok=True)
        self._open_up_socket_dir(path)
        _check(lib.sb_vhost_set_socket_dir(_b(path)), "vhost socket dir", path=path)
        self.vhost_socket_dir = path

    def vhost_create_blk_controller(self, ctrlr, dev_name, cpumask=None, readonly=False,
                                    max_queues=0, serial=None, packed_ring=False):
        self._require_running("vhost_create_blk_controller")
        opts = ffi.new("struct sb_vhost_blk_opts *")
        keep = [_b(ctrlr), _b(dev_name), _b(cpumask), _b(serial)]
        opts.name, opts.bdev_name, opts.cpumask, opts.serial = keep
        opts.readonly = bool(readonly)
        opts.packed_ring = bool(packed_ring)
        opts.max_queues = _u(max_queues, "max_queues", 16)
        _check(lib.sb_vhost_blk_create(opts), "vhost_create_blk_controller", ctrlr=ctrlr,
               dev_name=dev_name)
        try:
            self._open_up_socket(ctrlr)
        except OSError as exc:
            # A socket QEMU cannot open is no use: leave nothing behind.
            lib.sb_vhost_delete(_b(ctrlr), True)
            raise exception.PermissionDenied(
                errno=exc.errno or 1, op="vhost_create_blk_controller",
                reason="cannot set the owner group or mode of the socket of %s: %s"
                       % (ctrlr, exc.strerror or exc)) from exc

    def _open_up_socket_dir(self, path):
        """Give the socket directory search permission for whoever the socket
        mode lets in (connect() needs it on every directory of the path)."""
        if self.vhost_socket_mode is None:
            return
        if self.vhost_socket_gid is not None:
            os.chown(path, -1, self.vhost_socket_gid)
        extra = 0
        if self.vhost_socket_mode & 0o060:
            extra |= 0o010
        if self.vhost_socket_mode & 0o006:
            extra |= 0o001
        cur = stat.S_IMODE(os.stat(path).st_mode)
        if cur | extra != cur:
            os.chmod(path, cur | extra)

    def _open_up_socket(self, ctrlr):
        """Apply vhost_socket_group/vhost_socket_mode to a new controller's socket.

        The C side creates it 0600 before listen(), so nobody connects in
        the window before this runs.
        """
        if self.vhost_socket_mode is None and self.vhost_socket_gid is None:
            return
        if self.vhost_socket_dir is not None:
            # Where the C side puts it ("<dir>/<name>"): no round trip to ask.
            path = os.path.join(self.vhost_socket_dir, ctrlr)
        else:
            path = self.vhost_get_controllers(ctrlr)[0]["socket"]
        if self.vhost_socket_gid is not None:
            os.chown(path, -1, self.vhost_socket_gid)
        if self.vhost_socket_mode is not None:
            os.chmod(path, self.vhost_socket_mode)

    def vhost_delete_controller(self, ctrlr, force=False):
        self._require_running("vhost_delete_controller")
        rc = lib.sb_vhost_delete(_b(ctrlr), bool(force))
        reason = None
        if rc == -16:
            reason = ("controller %s has a connected front-end; detach it from the VM "
                      "first or delete with force" % ctrlr)
        elif rc == -19:
            reason = "controller %s does not exist" % ctrlr
        _check(rc, "vhost_delete_controller", ctrlr=ctrlr, reason=reason)

    def vhost_controller_set_coalescing(self, ctrlr, delay_base_us, iops_threshold):
        self._require_running("vhost_controller_set_coalescing")
        _check(lib.sb_vhost_set_coalescing(_b(ctrlr), _u(delay_base_us, "delay_base_us", 32),
                                           _u(iops_threshold, "iops_threshold", 32)),
               "vhost_controller_set_coalescing", ctrlr=ctrlr)

    def vhost_get_controllers(self, name=None):
        self._require_running("vhost_get_controllers")
        if name is not None:
            info = ffi.new("struct sb_vhost_ctrlr_info *")
            _check(lib.sb_vhost_get_info(_b(name), info), "vhost_get_controllers", name=name,
                   reason="controller %s does not exist" % name)
            return [_ctrlr_dict(info)]
        cap = 64
        while True:
            arr = ffi.new("struct sb_vhost_ctrlr_info[]", cap)
            count = ffi.new("uint32_t *")
            _check(lib.sb_vhost_list(arr, cap, count), "vhost_get_controllers")
            if count[0] <= cap:
                return [_ctrlr_dict(arr[i]) for i in range(count[0])]
            cap = count[0] + 16

    # ---- restart without a disconnect (sb/vhost.h) ----

    def vhost_handoff_export(self):
        """Stop every controller's rings and let go of their sockets and
        sessions for the next process: a list of records (dicts; "why" says
        why a session stays behind, None when it goes)."""
        self._require_running("vhost_handoff_export")
        cap = 64
        while True:
            arr = ffi.new("struct sb_vhost_handoff[]", cap)
            count = ffi.new("uint32_t *")
            rc = lib.sb_vhost_handoff_export(arr, cap, count)
            if rc == -errno.ENOSPC:
                cap = count[0] + 16
                continue
            _check(rc, "vhost handoff", reason="a live migration is logging dirty pages; "
                   "upgrade after it ends" if rc == -errno.EBUSY else None)
            return [_handoff_dict(arr[i]) for i in range(count[0])]

    def vhost_handoff_stage(self, records):
        """Take the records of a previous process (before re-creating its controllers)."""
        self._require_running("vhost_handoff_stage")
        arr = ffi.new("struct sb_vhost_handoff[]", max(len(records), 1))
        for i, rec in enumerate(records):
            try:
                _handoff_fill(arr[i], rec)
            except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
                raise exception.InvalidInput(reason="handoff record %d: %r" % (i, exc)) from exc
        _check(lib.sb_vhost_handoff_stage(arr, len(records)), "vhost handoff stage")

    def vhost_handoff_finish(self):
        """Close what no re-created controller claimed; their names."""
        self._require_running("vhost_handoff_finish")
        buf = ffi.new("char[]", 8192)
        count = ffi.new("uint32_t *")
        _check(lib.sb_vhost_handoff_finish(buf, len(buf), count), "vhost handoff finish")
        return [n for n in _s(buf).split(",") if n] if count[0] else []

    def vhost_fdstore_enable(self, notify_socket):
        """Keep every session's fds and state in the service manager's fd
        store (sd_notify FDSTORE=1 to ``notify_socket``)."""
        self._require_running("vhost_fdstore_enable")
        _check(lib.sb_vhost_fdstore_enable(_b(notify_socket)), "fd store",
               notify_socket=notify_socket)

    def vhost_fdstore_restore(self, fds):
        """Stage the sessions of the stored fds a restart got back
        (``[(fd, name)]``; every fd is taken); the controllers whose
        session was restored."""
        self._require_running("vhost_fdstore_restore")
        arr = ffi.new("int[]", [fd for fd, _ in fds] or [0])
        keep = [ffi.new("char[]", name.encode()) for _, name in fds]
        names = ffi.new("const char *[]", keep or [ffi.NULL])
        buf = ffi.new("char[]", 65536)
        sessions = ffi.new("uint32_t *")
        _check(lib.sb_vhost_fdstore_restore(arr, names, len(fds), buf, len(buf), sessions),
               "fd store restore")
        return [n for n in _s(buf).split(",") if n]

    # ---- logs ----

    @staticmethod
    def log_recent():
        buf = ffi.new("char[]", 256 * 1024)
        n = lib.sb_log_get_recent(buf, len(buf))
        return ffi.string(buf, n).decode("utf-8", "replace")

    @staticmethod
    def log_clear():
        lib.sb_log_clear_recent()

    @staticmethod
    def set_log_level(level):
        try:
            lib.sb_log_set_level(_LOG_LEVELS[level.upper()])
        except KeyError:
            raise exception.InvalidInput(reason="log level must be one of %s"
                                         % ", ".join(_LOG_LEVELS)) from None

    @staticmethod
    def set_log_file(path):
        _check(lib.sb_log_open(_b(path)), "log file", path=path)


def _bdev_dict(info):
    driver_specific = {}
    raw = _s(info.driver_specific)
    if raw:
        try:
            driver_specific = json.loads(raw)
        except ValueError:
            driver_specific = {"raw": raw}
    io_types = {n: bool(info.supported_io_types[i]) for i, n in enumerate(_IO_TYPE_NAMES)}
    for extra in ("nvme_admin", "nvme_io", "compare", "compare_and_write", "abort",
                  "zcopy", "seek_hole", "seek_data", "copy"):
        io_types[extra] = False
    out = {
        "name": _s(info.name),
        "aliases": [_s(info.aliases[i]) for i in range(info.num_aliases)],
        "product_name": _s(info.product_name),
        "block_size": info.block_size,
        "num_blocks": info.num_blocks,
        "uuid": _s(info.uuid),
        "assigned_rate_limits": {n: info.qos_limits[i] for i, n in enumerate(_QOS_NAMES)},
        "claimed": bool(info.claimed),
        "zoned": False,
        "supported_io_types": io_types,
        "driver_specific": driver_specific,
    }
    if info.physical_block_size and info.physical_block_size != info.block_size:
        out["physical_block_size"] = info.physical_block_size
    if info.claimed:
        out["claim_type"] = "exclusive_write"
        out["claimed_by"] = _s(info.claimed_by)
    out["module"] = _s(info.module)
    return out


_IOSTAT_FIELDS = (
    "bytes_read", "num_read_ops", "bytes_written", "num_write_ops", "bytes_unmapped",
    "num_unmap_ops", "bytes_copied", "num_copy_ops", "read_latency_ticks",
    "max_read_latency_ticks", "min_read_latency_ticks", "write_latency_ticks",
    "max_write_latency_ticks", "min_write_latency_ticks", "unmap_latency_ticks",
    "max_unmap_latency_ticks", "min_unmap_latency_ticks", "copy_latency_ticks",
    "max_copy_latency_ticks", "min_copy_latency_ticks", "queue_depth", "io_time",
    "weighted_io_time",
)


def _iostat_dict(st):
    out = {"name": _s(st.name)}
    for field in _IOSTAT_FIELDS:
        out[field] = getattr(st, field)
    out["num_write_zeroes_ops"] = st.num_write_zeroes_ops
    out["bytes_write_zeroes"] = st.bytes_write_zeroes
    out["num_flush_ops"] = st.num_flush_ops
    out["num_reset_ops"] = st.num_reset_ops
    out["io_error"] = {"count": st.num_io_errors}
    return out


def _queues(info):
    # One slice of the array: indexing cdata per queue cost more than the
    # rest of the controller (vhost_get_controllers of 1000 controllers).
    started = info.queues_started
    return [{"id": q, "reactor_core": core, "started": bool(started & (1 << q))}
            for q, core in enumerate(info.queue_core[0:info.max_queues])]


def _ctrlr_dict(info):
    return {
        "ctrlr": _s(info.name),
        "cpumask": _s(info.cpumask),
        "delay_base_us": info.delay_base_us,
        "iops_threshold": info.iops_threshold,
        "socket": _s(info.socket),
        "sessions": [{"vid": 0, "id": 0, "name": _s(info.name), "started": bool(info.started)}]
        if info.connected else [],
        "backend_specific": {"block": {"readonly": bool(info.readonly),
                                       "bdev": _s(info.bdev_name)}},
        "connected": bool(info.connected),
        "broken": bool(info.broken),
        "max_queues": info.max_queues,
        "num_queues": info.num_queues,
        "features": info.features,
        "protocol_features": info.protocol_features,
        "reactor_core": info.reactor_core,
        # Queue q runs on the (q % n)-th reactor of the cpumask.
        "queues": _queues(info),
        "completed_ios": info.completed_ios,
        "dirty_logging": bool(info.dirty_logging),
        "adopted": bool(info.adopted),
    }


# A handoff record as a dict: the struct's fields by name (sb/vhost.h).
_HANDOFF_SCALARS = ("listen_fd", "conn_fd", "slave_fd", "features", "protocol_features",
                    "features_set", "inflight_fd", "inflight_size", "inflight_offset",
                    "inflight_qsize", "inflight_nq")
_HANDOFF_REGION = ("gpa", "size", "uva", "mmap_offset", "fd")
_HANDOFF_VQ = ("num", "base", "addr_flags", "desc_addr", "avail_addr", "used_addr",
               "log_addr", "kickfd", "callfd", "addr_set", "kick_set", "enabled", "running",
               "base_used")
# Fields an earlier agent's records do not have, and what they mean there.
_HANDOFF_VQ_DEFAULTS = {"base_used": 0}


def _handoff_dict(h):
    d = {"name": _s(h.name), "socket": _s(h.socket),
         "why": _s(h.why) if h.why != ffi.NULL else None}
    for key in _HANDOFF_SCALARS:
        d[key] = getattr(h, key)
    d["regions"] = [{k: getattr(h.regions[i], k) for k in _HANDOFF_REGION}
                    for i in range(h.nregions)]
    d["vqs"] = [{k: getattr(h.vqs[i], k) for k in _HANDOFF_VQ} for i in range(h.nvqs)]
    return d


def _handoff_fill(h, d):
    """Fill struct h from dict d; KeyError/TypeError/ValueError/OverflowError on a bad one."""
    name, sock = d["name"].encode(), d["socket"].encode()
    if len(name) >= len(h.name) or len(sock) >= len(h.socket):
        raise ValueError("name or socket too long")
    h.name, h.socket = name, sock
    for key in _HANDOFF_SCALARS:
        setattr(h, key, d[key])
    regions, vqs = d["regions"], d["vqs"]
    if len(regions) > len(h.regions) or len(vqs) > len(h.vqs):
        raise ValueError("too many regions or queues")
    h.nregions, h.nvqs = len(regions), len(vqs)
    for i, r in enumerate(regions):
        for key in _HANDOFF_REGION:
            setattr(h.regions[i], key, r[key])
    for i, v in enumerate(vqs):
        for key in _HANDOFF_VQ:
            setattr(h.vqs[i], key, v[key] if key not in _HANDOFF_VQ_DEFAULTS
                    else v.get(key, _HANDOFF_VQ_DEFAULTS[key]))


class BdevWatch:
    """An open read-only descriptor that counts its bdev's events.

    The C watch is freed when this object is closed or garbage collected.
    """

    def __init__(self, name, reactor=0):
        out = ffi.new("struct sb_bdev_watch **")
        _check(lib.sb_bdev_watch_open(_b(name), reactor, out), "bdev watch", name=name)
        self._watch = ffi.gc(out[0], lib.sb_bdev_watch_close)

    def events(self):
        """{"resize": n, "remove": n, "num_blocks": last size seen}."""
        r, m, n = ffi.new("uint64_t *"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.sb_bdev_watch_get(self._watch, r, m, n)
        return {"resize": r[0], "remove": m[0], "num_blocks": n[0]}

    def close(self):
        if self._watch is not None:
            watch, self._watch = self._watch, None
            ffi.release(watch)
