"""A real single-node Ceph cluster (1 mon, 1 bluestore OSD, optional mgr) on 127.0.0.1.

Built from Debian's packages (ceph-mon, ceph-osd, ceph-common) in a temp
directory: its own ceph.conf, keyrings, monitor store and OSD data, every
path (admin sockets, logs, pid files) under that directory, monitors on two
free loopback ports.  Daemons are stopped by their pid files, never by name,
so clusters of other tests on the host are left alone.

The client section sets short librados timeouts, so I/O to a stopped OSD
fails within seconds instead of hanging (``OP_TIMEOUT``).

    with CephCluster() as cluster:
        cluster.rbd("create", "--size", "64M", "rbd/img")
        cluster.stop_osd(); cluster.start_osd()
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

CEPH_BINARIES = ("ceph-mon", "ceph-osd", "ceph", "rbd", "ceph-authtool", "monmaptool")
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
# librados timeouts of the clients (seconds): bounded errors on a dead OSD.
OP_TIMEOUT = 8
POOL = "rbd"


def available():
    """Why a cluster cannot start here, or None."""
    missing = [b for b in CEPH_BINARIES if shutil.which(b) is None]
    if missing:
        return "Ceph binaries missing: %s (scripts/install-deps.sh installs them)" % (
            ", ".join(missing))
    return None


@contextlib.contextmanager
def running_cluster(**kw):
    """A CephCluster(**kw) for tests; a machine without Ceph fails the test
    (CI installs it: a missing one is a broken setup)."""
    import pytest

    reason = available()
    if reason:
        pytest.fail(reason)
    with CephCluster(**kw) as cluster:
        yield cluster


def _free_ports(count):
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _clean_env():
    """The ceph CLI is Debian's /usr/bin/python3 program: keep a venv out of it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_PRELOAD")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


class CephError(RuntimeError):
    pass


class CephCluster:
    """One cluster; ``start()`` then ``stop()`` (or use ``with``)."""

    def __init__(self, base_dir=None, osd_size_gb=8, with_mgr=False, client_options=None):
        self._own_dir = base_dir is None
        # Admin socket paths must stay below ~107 bytes: a short /tmp directory.
        self.dir = base_dir or tempfile.mkdtemp(prefix="ceph", dir="/tmp")
        self.conf = os.path.join(self.dir, "ceph.conf")
        self.keyring = os.path.join(self.dir, "keyring")
        self.fsid = str(uuid.uuid4())
        self.osd_size = osd_size_gb << 30
        self.mon_ports = _free_ports(2)
        self.pool = POOL
        self.osd_id = None
        self.osd_uuid = None
        self.admin_key = None
        # The mgr (~300 MiB) reports pool and cluster usage; librbd I/O needs none.
        self.with_mgr = with_mgr
        # Extra [client] options of ceph.conf, e.g. {"rbd_cache": "false"}.
        self.client_options = dict(client_options or {})

    # ---- helpers ----

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def mon_host(self):
        return "[v2:127.0.0.1:%d,v1:127.0.0.1:%d]" % tuple(self.mon_ports)

    def _run(self, args, input=None, timeout=60, check=True, env=None):
        proc = subprocess.run(args, input=input, capture_output=True, timeout=timeout,
                              env=env or _clean_env(), text=True)
        if check and proc.returncode != 0:
            raise CephError("%s failed (%d): %s%s" % (" ".join(args), proc.returncode,
                                                      proc.stdout[-2000:],
                                                      proc.stderr[-2000:]))
        return proc

    def ceph(self, *args, timeout=60, input=None):
        """The ``ceph`` CLI against this cluster; returns stdout."""
        return self._run(["ceph", "-c", self.conf, "--connect-timeout", "20"] + list(args),
                         input=input, timeout=timeout).stdout

    def ceph_json(self, *args, timeout=60):
        return json.loads(self.ceph(*args, "-f", "json", timeout=timeout))

    def rbd(self, *args, timeout=120):
        """The ``rbd`` CLI against this cluster; returns stdout."""
        return self._run(["rbd", "-c", self.conf] + list(args), timeout=timeout).stdout

    def client_config(self):
        """bdev_rbd_create ``config`` for a client that reads no ceph.conf."""
        return {"mon_host": self.mon_host, "key": self.admin_key,
                "rados_osd_op_timeout": str(OP_TIMEOUT),
                "rados_mon_op_timeout": str(OP_TIMEOUT),
                "client_mount_timeout": str(OP_TIMEOUT)}

    # ---- set-up ----

    def _write_conf(self):
        d = self.dir
        for sub in ("run", "log", "mon", "osd", "mgr"):
            os.makedirs(self.path(sub), exist_ok=True)
        text = """[global]
fsid = {fsid}
mon_host = {mon_host}
public_addr = 127.0.0.1
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = {d}/keyring
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
log_file = {d}/log/$name.log
pid_file = {d}/run/$name.pid
mon_data = {d}/mon/$id
osd_data = {d}/osd/$id
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
paxos_propose_interval = 0.1
ms_bind_ipv6 = false
crash_dir = {d}/crash
exporter_sock_dir = {d}/run

[mon]
mon_initial_members = a

[osd]
keyring = {d}/osd/$id/keyring
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = {osd_size}
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
osd_memory_target = 939524096
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2

[client]
rados_osd_op_timeout = {t}
rados_mon_op_timeout = {t}
client_mount_timeout = {t}
log_file = {d}/log/client.$pid.log
admin_socket =
""".format(fsid=self.fsid, mon_host=self.mon_host, d=d, osd_size=self.osd_size,
           t=OP_TIMEOUT)
        text += "".join("%s = %s\n" % kv for kv in self.client_options.items())
        with open(self.conf, "w") as f:
            f.write(text)

    def _keyrings(self):
        mon_kr = self.path("mon.keyring")
        self._run(["ceph-authtool", "--create-keyring", mon_kr, "--gen-key", "-n", "mon.",
                   "--cap", "mon", "allow *"])
        self._run(["ceph-authtool", "--create-keyring", self.keyring, "--gen-key", "-n",
                   "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
                   "--cap", "mgr", "allow *"])
        self._run(["ceph-authtool", mon_kr, "--import-keyring", self.keyring])
        self.admin_key = self._run(["ceph-authtool", self.keyring, "-n", "client.admin",
                                    "-p"]).stdout.strip()
        return mon_kr

    def _start_mon(self, mon_kr):
        monmap = self.path("monmap")
        self._run(["monmaptool", "--create", "--fsid", self.fsid, "--addv", "a",
                   self.mon_host, monmap])
        self._run(["ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap,
                   "--keyring", mon_kr])
        self._run(["ceph-mon", "-c", self.conf, "-i", "a"])
        self._wait_pidfile("mon.a")

    def _create_osd(self):
        self.osd_uuid = str(uuid.uuid4())
        secret = self._run(["ceph-authtool", "--gen-print-key"]).stdout.strip()
        out = self.ceph("osd", "new", self.osd_uuid, "-i", "-",
                        input=json.dumps({"cephx_secret": secret}))
        self.osd_id = int(out.strip())
        data = self.path("osd", str(self.osd_id))
        os.makedirs(data, exist_ok=True)
        with open(os.path.join(data, "keyring"), "w") as f:
            f.write("[osd.%d]\n\tkey = %s\n" % (self.osd_id, secret))
        self._run(["ceph-osd", "-c", self.conf, "-i", str(self.osd_id), "--mkfs",
                   "--osd-uuid", self.osd_uuid], timeout=120)

    def start_osd(self, wait=True, timeout=60):
        """Start (or restart) the OSD; with ``wait``, until the monitor sees it up."""
        env = _clean_env()
        if os.path.exists(TCMALLOC):
            env["LD_PRELOAD"] = TCMALLOC  # glibc malloc doubles the OSD's memory
        self._run(["ceph-osd", "-c", self.conf, "-i", str(self.osd_id)], env=env,
                  timeout=60)
        self._wait_pidfile("osd.%d" % self.osd_id)
        if wait:
            self.wait_osd_up(timeout)

    def _start_mgr(self, timeout=60):
        data = self.path("mgr", "x")
        os.makedirs(data, exist_ok=True)
        key = self.ceph("auth", "get-or-create", "mgr.x", "mon", "allow profile mgr",
                        "osd", "allow *", "mds", "allow *")
        with open(os.path.join(data, "keyring"), "w") as f:
            f.write(key)
        self._run(["ceph-mgr", "-c", self.conf, "-i", "x", "--keyring",
                   os.path.join(data, "keyring"), "--mgr-data", data], timeout=60)
        self._wait_pidfile("mgr.x")
        # Usage figures exist once the mgr has the OSD's statistics.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.ceph_json("df").get("stats", {})
            if stats.get("total_bytes"):
                return
            time.sleep(0.5)
        raise CephError("the mgr reported no usage in %ds" % timeout)

    def wait_osd_up(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.ceph_json("osd", "stat")
            st = st.get("osdmap", st)
            if st.get("num_up_osds") == 1 and st.get("num_in_osds") == 1:
                return
            time.sleep(0.3)
        raise CephError("the OSD did not come up in %ds (see %s)" % (
            timeout, self.path("log", "osd.%d.log" % self.osd_id)))

    def start(self):
        reason = available()
        if reason:
            raise CephError(reason)
        try:
            self._write_conf()
            mon_kr = self._keyrings()
            self._start_mon(mon_kr)
            self._create_osd()
            self.start_osd()
            self.ceph("osd", "pool", "create", self.pool, "8")
            self.rbd("pool", "init", self.pool)
            if self.with_mgr:
                self._start_mgr()
        except BaseException:
            self.stop()
            raise
        return self

    # ---- daemons ----

    def daemon_pids(self):
        """The live pids of the cluster's daemons (monitor, OSD, manager)."""
        names = ["mon.a"]
        if self.osd_id is not None:
            names.append("osd.%d" % self.osd_id)
        if self.with_mgr:
            names.append("mgr.x")
        return [pid for pid in map(self._read_pid, names) if pid and _alive(pid)]

    def _pidfile(self, name):
        return self.path("run", "%s.pid" % name)

    def _read_pid(self, name):
        try:
            with open(self._pidfile(name)) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def _wait_pidfile(self, name, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self._read_pid(name)
            if pid and _alive(pid):
                return pid
            time.sleep(0.05)
        raise CephError("%s did not start (no live pid in %s; log in %s)" % (
            name, self._pidfile(name), self.path("log")))

    def _stop_daemon(self, name, timeout=20):
        pid = self._read_pid(name)
        if pid is None or not _alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        try:
            os.unlink(self._pidfile(name))
        except FileNotFoundError:
            pass

    def stop_osd(self, hard=False):
        """Stop the OSD (SIGKILL with ``hard``: the monitor is not told)."""
        pid = self._read_pid("osd.%d" % self.osd_id)
        if hard and pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
            return
        self._stop_daemon("osd.%d" % self.osd_id)

    def stop(self):
        """Stop every daemon and remove the directory."""
        if self.osd_id is not None:
            self._stop_daemon("osd.%d" % self.osd_id)
        if self.with_mgr:
            self._stop_daemon("mgr.x")
        self._stop_daemon("mon.a")
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone (the daemons fork away from us, but be safe).
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
