"""The agent's configuration record and its file in ``state_dir``.

The record holds, in creation order, the call that made each bdev and
controller (with the values the engine chose, such as a bdev's UUID), plus
QoS limits and coalescing settings.  It renders as SPDK's ``save_config``
JSON, which is both what ``framework_get_config`` returns and what the state
file holds, so a state file can be fed to SPDK's ``load_config`` and back.

The file is replaced atomically: write a temp file, fsync it, rename it over
the old one, fsync the directory.  A file that does not parse is never
replaced: the agent refuses to start and names it.
"""

import collections
import copy
import json
import logging
import os

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


def render(config):
    """The config as bytes: valid JSON with one call per line.

    Readable and diff-able, and several times faster than ``indent=2`` (which
    leaves the C encoder), which matters with thousands of calls written on
    every change.
    """
    subs = []
    for sub in config["subsystems"]:
        calls = ",\n".join("    " + json.dumps(c, separators=(", ", ": "))
                           for c in sub["config"])
        subs.append('  {"subsystem": %s, "config": [%s]}' % (
            json.dumps(sub["subsystem"]), "\n" + calls + "\n  " if calls else ""))
    return ('{"subsystems": [\n%s\n]}\n' % ",\n".join(subs)).encode("utf-8")


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

    # ---- bdevs ----

    def add_bdev(self, name, method, params):
        self.bdevs[name] = (method, dict(params))
        self.drop_pending(name)

    def update_bdev(self, name, **changes):
        if name in self.bdevs:
            self.bdevs[name][1].update(changes)

    def remove_bdev(self, name):
        self.bdevs.pop(name, None)
        self.qos.pop(name, None)

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
        self.drop_pending(name)

    def remove_ctrlr(self, name):
        self.ctrlrs.pop(name, None)
        self.coalescing.pop(name, None)

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

    def subsystem_config(self, subsystem):
        """The calls that rebuild ``subsystem`` (framework_get_config)."""
        calls = []
        if subsystem == "bdev":
            for method, params in self.bdevs.values():
                calls.append({"method": method, "params": dict(params)})
            for name, limits in self.qos.items():
                params = {"name": name}
                params.update(limits)
                calls.append({"method": "bdev_set_qos_limit", "params": params})
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

    def save(self):
        """Write the whole configuration to the state file, atomically."""
        if self.path is None:
            return
        atomic_write(self.path, render(self.to_config()))
        self.saves += 1
