"""The agent's configuration record and its files in ``state_dir``.

The record holds, in creation order, the call that made each bdev and
controller (with the values the engine chose, such as a bdev's UUID), plus
QoS limits and coalescing settings.  It renders as SPDK's ``save_config``
JSON, which is both what ``framework_get_config`` returns and what
``config.json`` holds, so that file can be fed to SPDK's ``load_config``.

Two files keep it (docs/agent.md, "Persistence"):

- ``config.json``, the whole record at its last *compaction*, replaced
  atomically (temp file, fsync, rename, fsync of the directory);
- ``config.wal``, a write-ahead log of the changes since: a header record
  naming the ``config.json`` it applies to (its SHA-256), then one record per
  group of changes, each ``<u32 length><u32 crc32 of length and payload>``
  + a JSON array of changes, appended with one ``write`` and one
  ``fdatasync``.

The latest record is ``config.json`` plus the log's complete records
(:func:`load_file`).  A torn last record (a crash in the middle of an
append) was never acknowledged and is ignored; a bad record with a good
record anywhere after it, or a bad ``config.json``, stops the start and is
named.  A
compaction writes the new ``config.json`` first, then a new log (temp
file, rename); a crash in between leaves a log naming the old
``config.json``, which the loader recognises as already folded in.

Writes are group-committed (:class:`StateWriter`): a change hands its
records to a writer thread and its RPC is answered once a write that
includes it is on disk; changes that come in while one write runs share the
next one.  So every acknowledged change is durable, and concurrent clients
do not pay one fsync each.
"""

import collections
import concurrent.futures
import copy
import errno
import hashlib
import json
import logging
import os
import struct
import threading
import zlib

from spdk_backend import exception

LOG = logging.getLogger(__name__)

STATE_FILE = "config.json"
LOG_FILE = "config.wal"
SUBSYSTEMS = (
    {"subsystem": "bdev", "depends_on": []},
    {"subsystem": "vhost_blk", "depends_on": ["bdev"]},
)

SUBSYSTEM_NAMES = tuple(s["subsystem"] for s in SUBSYSTEMS)

# An RBD cluster registration is kept among the bdevs under a key no bdev
# name can have (rpc_bdev_rbd.py).
CLUSTER_KEY = "\0rbd_cluster:"

# The log's header record, then the records of changes.
LOG_VERSION = 1
_RECORD = struct.Struct("<II")      # payload length, crc32 of the length and payload
_LENGTH = struct.Struct("<I")
# The log is folded into config.json once it is larger than this and than
# twice config.json (and at a clean stop, and at every start).
COMPACT_MIN_BYTES = 1 << 20


class StateFileError(exception.ConfigurationError):
    msg_fmt = ("state file %(path)s is unusable: %(reason)s. It was kept for "
               "inspection; repair it, or move config.json and config.wal away "
               "to start with an empty configuration")


def log_path(path):
    """The write-ahead log next to the state file ``path``."""
    return os.path.join(os.path.dirname(path), LOG_FILE)


def _fsync_dir(directory):
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write(path, data):
    """Replace ``path`` with ``data`` (bytes) so a crash leaves old or new."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.tmp" % os.path.basename(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        # A full disk: leave no partial copy taking space (the old file stays).
        os.unlink(tmp)
        raise
    os.rename(tmp, path)
    _fsync_dir(directory)


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


# ---- the log's records ----

def _record_crc(length, payload):
    """The crc32 of a record covers its length: a length that a bad write or
    the medium changed is a bad record, not a record that runs off the end."""
    return zlib.crc32(payload, zlib.crc32(_LENGTH.pack(length)))


def encode_record(payload):
    """One log record: length, crc32 of length and payload, payload (bytes)."""
    return _RECORD.pack(len(payload), _record_crc(len(payload), payload)) + payload


def _valid_record_at(raw, off):
    """True when a whole record with a good checksum starts at ``off``."""
    if len(raw) - off < _RECORD.size:
        return False
    length, crc = _RECORD.unpack_from(raw, off)
    end = off + _RECORD.size + length
    return (0 < length and end <= len(raw)
            and _record_crc(length, raw[off + _RECORD.size:end]) == crc)


def _any_record_after(raw, off):
    """True when a good record starts anywhere after ``off`` (a scan: the bad
    record's length says nothing about where the next one starts)."""
    return any(_valid_record_at(raw, i) for i in range(off + 1, len(raw) - _RECORD.size + 1))


def log_header(base):
    """The log's first record: the config.json bytes it applies to."""
    return encode_record(json.dumps({"wal": LOG_VERSION,
                                     "base": hashlib.sha256(base).hexdigest()}).encode())


def read_records(raw, path="<log>"):
    """The payloads of the complete records in ``raw``; StateFileError when
    a record is bad and is not the torn end of the last append."""
    out, off, size = [], 0, len(raw)
    while off < size:
        bad = None
        if size - off < _RECORD.size:
            bad = "a record header cut short"
        else:
            length, crc = _RECORD.unpack_from(raw, off)
            end = off + _RECORD.size + length
            if end > size:
                bad = "a record cut short"
            elif length == 0:
                bad = "an empty record"
            elif _record_crc(length, raw[off + _RECORD.size:end]) != crc:
                bad = "a record with a bad checksum"
        if bad is not None:
            # One append is one write of one record: only the last record can
            # be torn, and it was never acknowledged.  A torn append can leave
            # any of its bytes unwritten (pages reach the disk in any order
            # before the fdatasync), so a bad record is the torn end exactly
            # when no good record follows it.
            if not _any_record_after(raw, off):
                LOG.warning("state log %s: ignoring %d byte(s) of a torn last record "
                            "(a change that was never acknowledged)", path, size - off)
                break
            raise StateFileError(path=path, reason="%s at offset %d, with records after it"
                                 % (bad, off))
        out.append(raw[off + _RECORD.size:end])
        off = end
    return out


def _key(subsystem, call):
    """(section, key) of a call in the record; None for bdev_wait_for_examine."""
    method, params = call["method"], call.get("params") or {}
    if subsystem == "bdev":
        if method == "bdev_wait_for_examine":
            return None
        if method == "bdev_set_qos_limit":
            return ("q", params.get("name"))
        if method == "bdev_rbd_register_cluster":
            return ("b", CLUSTER_KEY + str(params.get("name")))
        return ("b", params.get("name"))
    if method == "vhost_controller_set_coalescing":
        return ("s", params.get("ctrlr"))
    return ("c", params.get("ctrlr"))


class _Record:
    """The record as sections of calls by key, to apply the log's changes to."""

    def __init__(self, config):
        self.sections = {s: collections.OrderedDict() for s in "bqcs"}
        self.other = []         # subsystems the agent does not know: kept as they are
        for sub in config["subsystems"]:
            name = sub["subsystem"]
            if name not in SUBSYSTEM_NAMES:
                self.other.append(sub)
                continue
            for call in sub.get("config") or []:
                where = _key(name, call)
                if where is None:
                    continue
                section = self.sections[where[0]]
                key = where[1]
                if key in section:      # a hand-edited file: keep every call
                    key = (key, len(section))
                section[key] = call

    def apply(self, change):
        """One change of AgentState's log (AgentState._log)."""
        op, key = change[0], change[1]
        if op in ("b", "c", "q", "s"):
            self.sections[op][key] = change[2]
        elif op in ("b+", "c+"):       # a new name: at the end
            section = self.sections[op[0]]
            section.pop(key, None)
            section[key] = change[2]
        elif op == "b-":
            self.sections["b"].pop(key, None)
            self.sections["q"].pop(key, None)
        elif op == "c-":
            self.sections["c"].pop(key, None)
            self.sections["s"].pop(key, None)
        elif op in ("q-", "s-"):
            self.sections[op[0]].pop(key, None)
        elif op == "p-":                # a failed-replay call dropped
            where = _key(key, change[2])
            if where is not None:
                self.sections[where[0]].pop(where[1], None)
        else:
            raise ValueError("unknown change %r" % (op,))

    def config(self):
        s = self.sections
        bdev = list(s["b"].values()) + list(s["q"].values()) + [
            {"method": "bdev_wait_for_examine"}]
        vhost = list(s["c"].values()) + list(s["s"].values())
        return {"subsystems": [{"subsystem": "bdev", "config": bdev},
                               {"subsystem": "vhost_blk", "config": vhost}] + self.other}


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(path=path, reason=exc.strerror) from exc


def _parse_config(raw, path):
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateFileError(path=path, reason="not valid JSON (%s)" % exc) from exc
    validate_config(config, path)
    return config


def load_file(path):
    """The latest config: ``path`` (config.json) and the complete records of
    its log; None if neither exists; StateFileError if one is bad."""
    base = _read(path)
    wal = log_path(path)
    raw_log = _read(wal)
    if base is None:
        if raw_log:
            raise StateFileError(path=wal, reason="the log has no %s to apply to"
                                 % os.path.basename(path))
        return None
    config = _parse_config(base, path)
    if not raw_log:
        return config
    records = read_records(raw_log, wal)
    if not records:
        return config
    try:
        header = json.loads(records[0])
        if header.get("wal") != LOG_VERSION:
            raise ValueError("version %r, this agent reads %d" % (header.get("wal"),
                                                                  LOG_VERSION))
        if header.get("base") != hashlib.sha256(base).hexdigest():
            # A compaction wrote config.json and stopped before its new log:
            # config.json already holds every change of this one.
            LOG.info("state log %s is of an earlier %s: ignored", wal,
                     os.path.basename(path))
            return config
        record = None
        for payload in records[1:]:
            for group in json.loads(payload):
                for change in group:
                    if record is None:
                        record = _Record(config)
                    record.apply(change)
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError,
            AttributeError) as exc:
        raise StateFileError(path=wal, reason="a record that is not a change (%s)"
                             % exc) from exc
    if record is None:
        return config
    config = record.config()
    validate_config(config, wal)
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
    """Writes the state files in a thread of its own (group commit).

    ``submit(data, changes)``: ``data`` is the whole record (config.json's
    bytes) or None, ``changes`` the JSON of the changes since the previous
    submit.  The writer takes everything submitted while its previous write
    ran and makes one write of it: a compaction (config.json, then a new log
    with the changes that came after that snapshot) when one of them carries
    ``data``, else one appended log record.  Each submit's future is
    resolved once that write is on disk (or failed: its OSError).  After a
    failed write the log is not appended to again until a compaction
    succeeds (``needs_snapshot``)."""

    def __init__(self, path):
        self.path = path
        self.log_path = log_path(path)
        self.writes = 0
        self.compactions = 0
        self.log_bytes = 0          # the log's size (with what is queued for it)
        self.base_bytes = 0         # config.json's, at the last compaction
        self._log_fd = None         # open once this writer made the log
        self._broken = True         # no log of ours to append to (yet, or a failure)
        self._log_ok = False        # the writer thread's own view of it
        self._cond = threading.Condition()
        self._queue = []            # (seq, data, changes), in seq order
        self._seq = 0
        self._waiting = []          # (seq, future), in seq order
        self._busy = False
        self._closed = False
        self._thread = None

    @property
    def needs_snapshot(self):
        """True when the next write must be a compaction (the AgentState then
        hands the whole record with its changes)."""
        return self._broken or self.log_bytes > max(COMPACT_MIN_BYTES, 2 * self.base_bytes)

    @property
    def owns_log(self):
        """True once this writer made the log (a compaction of its own)."""
        return self._log_fd is not None

    @property
    def has_changes(self):
        """True when the log holds changes a compaction would fold in."""
        return self._log_fd is not None and self.log_bytes > 0

    def submit(self, data=None, changes=None):
        """Queue a write; a Future of it."""
        fut = concurrent.futures.Future()
        with self._cond:
            while self._closed:     # a close() in progress: it returns soon
                self._cond.wait()
            self._seq += 1
            if data is not None:
                self._broken = False        # the next compaction makes a new log
                self.log_bytes = 0
            if changes:
                self.log_bytes += len(changes) + _RECORD.size + 2
            self._queue.append((self._seq, data, changes))
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
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                seq = batch[-1][0]
                self._busy = True
            err = None
            try:
                self._write(batch)
            except Exception as exc:  # every failure goes to the changes it carried
                err = exc
                self._log_ok = False
                with self._cond:
                    self._broken = True
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

    def _write(self, batch):
        last = max((i for i, (_, data, _) in enumerate(batch) if data is not None),
                   default=None)
        if last is not None:
            after = [c for _, _, c in batch[last + 1:] if c]
            self._compact(batch[last][1], after)
            return
        changes = [c for _, _, c in batch if c]
        if not changes:
            return
        if not self._log_ok:
            # After a failed write, or before the first compaction: the log may
            # not go with config.json.  AgentState sends a snapshot next.
            raise OSError(errno.EIO, "the state log %s waits for a compaction after a "
                          "failed write" % self.log_path)
        record = encode_record(b"[" + b",".join(changes) + b"]")
        size = os.fstat(self._log_fd).st_size
        try:
            _write_all(self._log_fd, record)
            os.fdatasync(self._log_fd)
        except OSError:
            # No torn record left for the next append to follow (it would
            # read as a corrupt log); the next write is a compaction anyway.
            try:
                os.ftruncate(self._log_fd, size)
            except OSError:
                pass
            raise

    def _compact(self, data, changes):
        """config.json := data, then a new log holding ``changes``."""
        atomic_write(self.path, data)
        header = log_header(data)
        body = header
        if changes:
            body += encode_record(b"[" + b",".join(changes) + b"]")
        directory = os.path.dirname(os.path.abspath(self.log_path))
        tmp = os.path.join(directory, ".%s.tmp" % LOG_FILE)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
                     0o600)
        try:
            _write_all(fd, body)
            os.fsync(fd)
            # config.json is on disk (and its rename): only now the new log.
            os.rename(tmp, self.log_path)
            _fsync_dir(directory)
        except OSError:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if self._log_fd is not None:
            os.close(self._log_fd)
        self._log_fd = fd
        self._log_ok = True
        self.compactions += 1
        with self._cond:
            self.base_bytes = len(data)

    def pending(self):
        """The Future of the newest write not done yet, or None."""
        with self._cond:
            return self._waiting[-1][1] if self._waiting else None

    def flush(self):
        """Wait until everything submitted so far is written (or failed)."""
        with self._cond:
            while self._queue or self._busy:
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

    def release(self):
        """Close the log (this process no longer writes the state)."""
        self.close()
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
            self._log_ok = False
            self._broken = True


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
        # The changes since the last save_later, in JSON, as the log records
        # them (_Record.apply): every change of the record goes through here.
        self._log = []
        # False while the start replays the state files: the compaction that
        # follows holds it all.
        self.log_changes = True

    def _changed(self, *change):
        if self._writer is not None and self.log_changes:
            self._log.append(json.dumps(change))

    # ---- bdevs ----

    def add_bdev(self, name, method, params):
        # Its failed-replay calls go first: in the log's record they stand
        # among the bdevs under the same key.
        self.drop_pending(name)
        new = name not in self.bdevs
        self.bdevs[name] = (method, dict(params))
        # A name added again keeps its place, in both (as dicts do).
        call = {"method": method, "params": self.bdevs[name][1]}
        self._bdev_lines[name] = render_call(call)
        self._changed("b+" if new else "b", name, call)

    def update_bdev(self, name, **changes):
        if name in self.bdevs:
            method, params = self.bdevs[name]
            params.update(changes)
            call = {"method": method, "params": params}
            self._bdev_lines[name] = render_call(call)
            self._changed("b", name, call)

    def remove_bdev(self, name):
        self.bdevs.pop(name, None)
        self.qos.pop(name, None)
        self._bdev_lines.pop(name, None)
        self._changed("b-", name)

    def bdev_method(self, name):
        entry = self.bdevs.get(name)
        return entry[0] if entry else None

    def set_qos(self, name, limits):
        merged = self.qos.setdefault(name, {})
        merged.update(limits)
        if not any(merged.values()):
            del self.qos[name]
            self._changed("q-", name)
        else:
            self._changed("q", name, self._qos_call(name, merged))

    # ---- controllers ----

    def add_ctrlr(self, name, params):
        self.drop_pending(name)
        new = name not in self.ctrlrs
        self.ctrlrs[name] = ("vhost_create_blk_controller", dict(params))
        call = {"method": "vhost_create_blk_controller", "params": self.ctrlrs[name][1]}
        self._ctrlr_lines[name] = render_call(call)
        self._changed("c+" if new else "c", name, call)

    def remove_ctrlr(self, name):
        self.ctrlrs.pop(name, None)
        self.coalescing.pop(name, None)
        self._ctrlr_lines.pop(name, None)
        self._changed("c-", name)

    def set_coalescing(self, name, delay_base_us, iops_threshold):
        self.coalescing[name] = {"ctrlr": name, "delay_base_us": delay_base_us,
                                 "iops_threshold": iops_threshold}
        self._changed("s", name, {"method": "vhost_controller_set_coalescing",
                                  "params": dict(self.coalescing[name])})

    # ---- pending (failed replay) ----

    def add_pending(self, subsystem, call):
        self.pending.append((subsystem, copy.deepcopy(call)))

    def drop_pending(self, name):
        """Forget failed-replay calls that concern ``name``; True if any."""
        keep = []
        for sub, call in self.pending:
            params = call.get("params") or {}
            if name in (params.get("name"), params.get("ctrlr")):
                self._changed("p-", sub, call)
            else:
                keep.append((sub, call))
        dropped = len(keep) != len(self.pending)
        self.pending = keep
        return dropped

    # ---- rendering ----

    @staticmethod
    def _qos_call(name, limits):
        params = {"name": name}
        params.update(limits)
        return {"method": "bdev_set_qos_limit", "params": params}

    def _qos_calls(self):
        return [self._qos_call(name, limits) for name, limits in self.qos.items()]

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

    def _submit(self, snapshot):
        """Hand the changes since the last submit to the writer; a Future."""
        changes, self._log = self._log, []
        if snapshot or self._writer.needs_snapshot:
            # The whole record: it holds the changes too.
            return self._writer.submit(self.render())
        if not changes:
            return self._writer.submit()
        return self._writer.submit(changes=("[" + ",".join(changes) + "]").encode("utf-8"))

    def save(self):
        """Write the whole configuration to config.json (a compaction: the
        log starts again) and wait for it; OSError."""
        if self.path is None:
            return
        self.saves += 1
        self._submit(snapshot=True).result()

    def save_later(self):
        """Hand the changes to the writer thread (group commit); a Future of
        their write, or None without a state file.  Called by the one thread
        that changes the record, so the log follows the order of changes."""
        if self._writer is None:
            return None
        self.saves += 1
        return self._submit(snapshot=False)

    @property
    def writes(self):
        """State writes done by the writer thread (appends and compactions)."""
        return self._writer.writes if self._writer is not None else 0

    def pending_write(self):
        """The Future of the newest change not on disk yet, or None."""
        return self._writer.pending() if self._writer is not None else None

    def flush(self):
        """Wait until every change handed to the writer is on disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self, compact=False):
        """Write what is queued and stop the writer thread; ``compact``
        (a clean stop of the process that owns the state): fold the log into
        config.json first, so that file alone is the whole configuration."""
        if self._writer is None:
            return
        # Only a writer that made the log compacts: a start that failed
        # half-way through its replay must not write what it replayed.
        if compact and self._writer.owns_log and (self._writer.has_changes or self._log
                                                  or self._writer.needs_snapshot):
            try:
                self.save()
            except OSError as exc:
                LOG.error("could not fold the state log into %s: %s (the log keeps the "
                          "changes)", self.path, exc)
        self._writer.release()

    def release(self):
        """Stop writing the state files (another process owns them now)."""
        if self._writer is not None:
            self._writer.release()
