"""A systemd-journald of the test's own, in a mount namespace of its own.

systemd is not PID 1 on the test machines, so no journald runs.  ``Journald``
starts the real one (``/lib/systemd/systemd-journald``) in a private mount
namespace where tmpfs mounts cover /run and /var/log: its sockets
(``/run/systemd/journal/socket``, the path systemd-python's ``journal.send``
writes to) and its journal files exist in that namespace only, and nothing
on the host changes.  ``prefix`` runs a program in the namespace (nsenter
execs it: same pid); ``entries(**matches)`` is what ``journalctl -o json``
finds there.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

JOURNALD = "/lib/systemd/systemd-journald"


def unavailable():
    """Why a journald cannot be started here, or None."""
    if os.geteuid() != 0:
        return "a mount namespace needs root"
    for tool in ("unshare", "nsenter", "journalctl"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    if not os.access(JOURNALD, os.X_OK):
        return "%s is not installed" % JOURNALD
    return None


class Journald:
    def __init__(self):
        self.proc = None
        self._out = None

    @property
    def prefix(self):
        """argv that runs a program in this journald's mount namespace."""
        return ["nsenter", "--mount=/proc/%d/ns/mnt" % self.proc.pid, "--"]

    def start(self, timeout=10):
        # unshare execs sh, which execs journald: self.proc.pid is journald's.
        script = ("set -e; mount -t tmpfs -o mode=0755 sb-journal /run; "
                  "mount -t tmpfs -o mode=0755 sb-journal /var/log; "
                  "mkdir -p /run/systemd/journal; exec %s" % JOURNALD)
        self._out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._out.seek(0)
                raise RuntimeError("systemd-journald exited with %s: %s" % (
                    self.proc.returncode, self._out.read().decode(errors="replace")))
            probe = subprocess.run(self.prefix + ["test", "-S", "/run/systemd/journal/socket"])
            if probe.returncode == 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("systemd-journald made no socket in %ss" % timeout)

    def entries(self, **matches):
        """The journal's entries (dicts of strings) matching FIELD=value."""
        argv = self.prefix + ["journalctl", "--no-pager", "-o", "json"]
        argv += ["%s=%s" % kv for kv in sorted(matches.items())]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if out.returncode != 0 and "No entries" not in out.stderr + out.stdout:
            raise RuntimeError("journalctl failed: %s" % out.stderr)
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    def wait_for(self, predicate, timeout=20, **matches):
        """The entries once ``predicate(entries)`` holds (journald takes
        datagrams asynchronously); the last ones read at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries(**matches)
            if predicate(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
