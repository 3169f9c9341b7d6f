"""The agent's configuration record and its file in ``state_dir``.

The record holds, in creation order, the call that made each bdev and
controller (with the values the engine chose, such as a bdev's UUID), plus
QoS limits and coalescing settings.  It renders as SPDK's ``save_config``
JSON, which is both what ``framework_get_config`` returns and what the state
file holds, so a state file can be fed to SPDK's ``load_config`` and back.

The file is replaced atomically: write a temp file, fsync it, rename it over
the old one, fsync the directory.  A file that does not parse is never
replaced: the agent refuses to start and names it.

Writes are group-committed (:class:`StateWriter`): a change hands a
snapshot of the record to a writer thread and its RPC is answered once a
write that includes it is on disk; changes that come in while one write
runs share the next one.  So every acknowledged change is durable, and
concurrent clients do not pay one fsync each.
"""

import collections
import concurrent.futures
import copy
import json
import logging
import os
import threading

from spdk_backend import exception

LOG = logging.getLogger(__name__)

STATE_FILE = "config.json"
SUBSYSTEMS = (
    {"subsystem": "bdev", "depends_on": []},
    {"subsystem": "vhost_blk", "depends_on": ["bdev"]},
)


SUBSYSTEM_NAMES = tuple(s["subsystem"] for s in SUBSYSTEMS)


class StateFileError(exception.ConfigurationError):
    msg_fmt = ("state file %(path)s is unusable: %(reason)s. It was kept for "
               "inspection; repair it, or move it away to start with an empty "
               "configuration")


def atomic_write(path, data):
    """Replace ``path`` with ``data`` (bytes) so a crash leaves old or new."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.tmp" % os.path.basename(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        # A full disk: leave no partial copy taking space (the old file stays).
        os.unlink(tmp)
        raise
    os.rename(tmp, path)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def render_call(call):
    """One call's line in the state file."""
    return "    " + json.dumps(call, separators=(", ", ": "))


def _render_lines(subsystems):
    """[(subsystem name, [call lines])] as the state file's bytes."""
    subs = []
    for name, lines in subsystems:
        calls = ",\n".join(lines)
        subs.append('  {"subsystem": %s, "config": [%s]}' % (
            json.dumps(name), "\n" + calls + "\n  " if calls else ""))
    return ('{"subsystems": [\n%s\n]}\n' % ",\n".join(subs)).encode("utf-8")


def render(config):
    """The config as bytes: valid JSON with one call per line.

    Readable and diff-able, and several times faster than ``indent=2`` (which
    leaves the C encoder), which matters with thousands of calls written on
    every change.
    """
    return _render_lines([(sub["subsystem"], [render_call(c) for c in sub["config"]])
                          for sub in config["subsystems"]])


def load_file(path):
    """The config in ``path``; None if it does not exist; StateFileError if bad."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(path=path, reason=exc.strerror) from exc
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateFileError(path=path, reason="not valid JSON (%s)" % exc) from exc
    validate_config(config, path)
    return config


def validate_config(config, path="<config>"):
    """Check the save_config shape: subsystems of {subsystem, config: [calls]}."""
    def bad(reason):
        return StateFileError(path=path, reason=reason)

    if not isinstance(config, dict) or not isinstance(config.get("subsystems"), list):
        raise bad('expected an object with a "subsystems" array')
    for sub in config["subsystems"]:
        if not isinstance(sub, dict) or not isinstance(sub.get("subsystem"), str):
            raise bad('each subsystem needs a "subsystem" name')
        calls = sub.get("config")
        if calls is None:
            continue
        if not isinstance(calls, list):
            raise bad('"config" of subsystem %s must be an array' % sub["subsystem"])
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("method"), str) \
                    or not isinstance(call.get("params", {}), dict):
                raise bad("subsystem %s has an entry that is not a "
                          '{"method", "params"} object: %.80r' % (sub["subsystem"], call))


class StateWriter:
    """Writes snapshots of the state file in a thread of its own, newest
    first: one atomic write for every snapshot submitted while the previous
    write ran (group commit).  Each submit's future is resolved once a write
    of that snapshot, or of a later one, is on disk (or failed: its OSError)."""

    def __init__(self, path):
        self.path = path
        self.writes = 0
        self._cond = threading.Condition()
        self._data = None       # the newest snapshot not written yet
        self._seq = 0           # its number
        self._waiting = []      # (seq, future), in seq order
        self._busy = False
        self._closed = False
        self._thread = None

    def submit(self, data):
        """Queue ``data`` (bytes) to be written; a Future of its write."""
        fut = concurrent.futures.Future()
        with self._cond:
            while self._closed:     # a close() in progress: it returns soon
                self._cond.wait()
            self._seq += 1
            self._data = data
            self._waiting.append((self._seq, fut))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="state-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return fut

    def _run(self):
        while True:
            with self._cond:
                while self._data is None and not self._closed:
                    self._cond.wait()
                if self._data is None:
                    return
                data, seq, self._data = self._data, self._seq, None
                self._busy = True
            err = None
            try:
                atomic_write(self.path, data)
            except Exception as exc:  # every failure goes to the changes it carried
                err = exc
            finally:
                with self._cond:
                    self.writes += 1
                    done = [f for n, f in self._waiting if n <= seq]
                    self._waiting = [(n, f) for n, f in self._waiting if n > seq]
                    self._busy = False
                    self._cond.notify_all()
            for fut in done:
                if fut.done():      # a waiter that went away (cancelled)
                    continue
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

    def pending(self):
        """The Future of the newest snapshot not written yet, or None."""
        with self._cond:
            return self._waiting[-1][1] if self._waiting else None

    def flush(self):
        """Wait until everything submitted so far is written (or failed)."""
        with self._cond:
            while self._data is not None or self._busy:
                self._cond.wait()

    def close(self):
        """Write what is queued, then stop the thread (a later submit starts
        another: an agent whose upgrade failed serves on)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._cond:
            self._thread = None
            self._closed = False
            self._cond.notify_all()


class AgentState:
    """What the agent has configured, in creation order."""

    SUBSYSTEM_NAMES = SUBSYSTEM_NAMES

    def __init__(self, state_dir=None):
        self.path = os.path.join(state_dir, STATE_FILE) if state_dir else None
        self.bdevs = collections.OrderedDict()      # name -> (method, params)
        self.qos = collections.OrderedDict()        # name -> limits
        self.ctrlrs = collections.OrderedDict()     # name -> (method, params)
        self.coalescing = collections.OrderedDict()  # name -> params
        # Calls that failed to replay at start; kept (and saved) so a missing
        # backing file does not silently drop a disk from the configuration.
        self.pending = []                           # (subsystem, call)
        self.saves = 0
        # The state file's line of each bdev and controller call, made at its
        # change: rendering every call again on every save made a save at
        # 2000 calls cost ~19 ms (bench/agent_rpc_scale.py).
        self._bdev_lines = {}                       # name -> line, in bdevs' order
        self._ctrlr_lines = {}                      # name -> line, in ctrlrs' order
        self._writer = StateWriter(self.path) if self.path else None

    # ---- bdevs ----

    def add_bdev(self, name, method, params):
        self.bdevs[name] = (method, dict(params))
        # A name added again keeps its place, in both (as dicts do).
        self._bdev_lines[name] = render_call({"method": method, "params": self.bdevs[name][1]})
        self.drop_pending(name)

    def update_bdev(self, name, **changes):
        if name in self.bdevs:
            method, params = self.bdevs[name]
            params.update(changes)
            self._bdev_lines[name] = render_call({"method": method, "params": params})

    def remove_bdev(self, name):
        self.bdevs.pop(name, None)
        self.qos.pop(name, None)
        self._bdev_lines.pop(name, None)

    def bdev_method(self, name):
        entry = self.bdevs.get(name)
        return entry[0] if entry else None

    def set_qos(self, name, limits):
        merged = self.qos.setdefault(name, {})
        merged.update(limits)
        if not any(merged.values()):
            del self.qos[name]

    # ---- controllers ----

    def add_ctrlr(self, name, params):
        self.ctrlrs[name] = ("vhost_create_blk_controller", dict(params))
        self._ctrlr_lines[name] = render_call({"method": "vhost_create_blk_controller",
                                               "params": self.ctrlrs[name][1]})
        self.drop_pending(name)

    def remove_ctrlr(self, name):
        self.ctrlrs.pop(name, None)
        self.coalescing.pop(name, None)
        self._ctrlr_lines.pop(name, None)

    def set_coalescing(self, name, delay_base_us, iops_threshold):
        self.coalescing[name] = {"ctrlr": name, "delay_base_us": delay_base_us,
                                 "iops_threshold": iops_threshold}

    # ---- pending (failed replay) ----

    def add_pending(self, subsystem, call):
        self.pending.append((subsystem, copy.deepcopy(call)))

    def drop_pending(self, name):
        """Forget failed-replay calls that concern ``name``; True if any."""
        before = len(self.pending)
        self.pending = [(s, c) for s, c in self.pending
                        if name not in (c.get("params", {}).get("name"),
                                        c.get("params", {}).get("ctrlr"))]
        return len(self.pending) != before

    # ---- rendering ----

    def _qos_calls(self):
        calls = []
        for name, limits in self.qos.items():
            params = {"name": name}
            params.update(limits)
            calls.append({"method": "bdev_set_qos_limit", "params": params})
        return calls

    def subsystem_config(self, subsystem):
        """The calls that rebuild ``subsystem`` (framework_get_config)."""
        calls = []
        if subsystem == "bdev":
            for method, params in self.bdevs.values():
                calls.append({"method": method, "params": dict(params)})
            calls += self._qos_calls()
            calls.append({"method": "bdev_wait_for_examine"})
        elif subsystem == "vhost_blk":
            for method, params in self.ctrlrs.values():
                calls.append({"method": method, "params": dict(params)})
            for params in self.coalescing.values():
                calls.append({"method": "vhost_controller_set_coalescing",
                              "params": dict(params)})
        else:
            return None
        return calls

    def to_config(self, include_pending=True):
        subsystems = []
        for sub in SUBSYSTEMS:
            name = sub["subsystem"]
            calls = self.subsystem_config(name)
            if include_pending:
                calls = [c for s, c in self.pending if s == name] + calls
            subsystems.append({"subsystem": name, "config": calls})
        return {"subsystems": subsystems}

    def render(self):
        """The state file's bytes: render(self.to_config()), from the cached lines."""
        subsystems = []
        for sub in SUBSYSTEMS:
            name = sub["subsystem"]
            lines = [render_call(c) for s, c in self.pending if s == name]
            if name == "bdev":
                lines += self._bdev_lines.values()
                lines += [render_call(c) for c in self._qos_calls()]
                lines.append(render_call({"method": "bdev_wait_for_examine"}))
            else:
                lines += self._ctrlr_lines.values()
                lines += [render_call({"method": "vhost_controller_set_coalescing",
                                       "params": dict(p)}) for p in self.coalescing.values()]
            subsystems.append((name, lines))
        return _render_lines(subsystems)

    def save(self):
        """Write the whole configuration to the state file, atomically, and
        wait for it (through the writer: one writer at a time); OSError."""
        if self.path is None:
            return
        self.saves += 1
        self._writer.submit(self.render()).result()

    def save_later(self):
        """Hand a snapshot to the writer thread (group commit); a Future of
        its write, or None without a state file.  Called by the one thread
        that changes the record, so snapshots are in the order of changes."""
        if self._writer is None:
            return None
        self.saves += 1
        return self._writer.submit(self.render())

    @property
    def writes(self):
        """State file writes done by the writer thread."""
        return self._writer.writes if self._writer is not None else 0

    def pending_write(self):
        """The Future of the newest change not on disk yet, or None."""
        return self._writer.pending() if self._writer is not None else None

    def flush(self):
        """Wait until every snapshot handed to the writer is on disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        """Write what is queued and stop the writer thread."""
        if self._writer is not None:
            self._writer.close()
