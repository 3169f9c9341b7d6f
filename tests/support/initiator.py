"""Run native/build/tools/vhost_initiator from tests.

``run_initiator(binary, socket, *args, timeout=120)`` returns an
:class:`InitiatorResult` (``rc``, ``stdout``, ``stderr``, ``json``): with
``--json`` in ``args`` the workload's JSON object (or, for ``--hostile``, a
list of one object per case) is parsed into ``json``.

Exit codes: 0 ok (hostile: every case ran), 1 I/O errors or verify
mismatches, 2 usage, 3 connection/protocol failure.
"""

import collections
import json
import os
import subprocess

InitiatorResult = collections.namedtuple("InitiatorResult",
                                         "rc stdout stderr json")


def _parse(stdout, hostile):
    if hostile:
        return [json.loads(line) for line in stdout.splitlines()
                if line.startswith("{")]
    start = stdout.find("{")
    if start < 0:
        return None
    return json.loads(stdout[start:])


def run_initiator(binary, socket, *args, timeout=120):
    """Run the initiator against `socket`; never leaves it running."""
    cmd = [str(binary), "--socket", str(socket)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout)
    parsed = None
    if "--json" in args:
        try:
            parsed = _parse(proc.stdout, "--hostile" in args)
        except ValueError as exc:
            raise AssertionError("bad JSON from %s: %s\n%s"
                                 % (cmd, exc, proc.stdout))
    return InitiatorResult(proc.returncode, proc.stdout, proc.stderr, parsed)


def hostile_cases(binary):
    """Names of the hostile cases the initiator knows."""
    out = subprocess.run([str(binary), "--hostile", "list"], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class BackgroundInitiator:
    """vhost_initiator running in the background; always reaped."""

    def __init__(self, binary, sock, *args):
        self.cmd = [str(binary), "--socket", str(sock)] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.out = self.err = None

    def wait(self, timeout=60):
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("initiator still running after %ss: %s" % (timeout, self.cmd))
        return self.proc.returncode

    def result(self):
        start = (self.out or "").find("{")
        return json.loads(self.out[start:]) if start >= 0 else None

    def describe(self):
        return "rc=%s\nstdout:\n%s\nstderr:\n%s" % (self.proc.returncode, self.out, self.err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.out, self.err = self.proc.communicate(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.kill()


def make_uring_controller(client, base_dir, name, max_queues=2, image_bytes=64 << 20):
    """A controller ``name`` on a uring bdev "u-<name>" over a new sparse
    file in base_dir; its socket path.  ``client`` has ``call(method, **params)``."""
    img = os.path.join(base_dir, name + ".img")
    with open(img, "wb") as f:
        f.truncate(image_bytes)
    client.call("bdev_uring_create", name="u-" + name, filename=img)
    client.call("vhost_create_blk_controller", ctrlr=name, dev_name="u-" + name,
                max_queues=max_queues)
    return client.call("vhost_get_controllers", name=name)[0]["socket"]
