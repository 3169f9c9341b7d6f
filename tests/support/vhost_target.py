"""Our engine as a separate vhost-user-blk target process, for e2e tests.

A test that wants to SIGKILL the process serving a controller (and start
it again with the same controllers) cannot run the engine in-process, so
:class:`EngineTarget` runs::

    python -m tests.support.vhost_target CONFIG.json

``CONFIG.json``::

    {"socket_dir": "...", "core_mask": "0x1", "max_delay_us": 1000,
     "bdevs": [{"type": "uring", "name": "u0", "filename": "..."},
               {"type": "malloc", "name": "m0", "num_blocks": N,
                "block_size": 512},
               {"type": "null", "name": "n0", "num_blocks": N,
                "block_size": 512}],
     "controllers": [{"ctrlr": "c0", "dev_name": "u0", "readonly": false,
                      "max_queues": 2, "serial": "..."}]}

The process creates everything, prints ``READY`` on stdout and then serves
one JSON request per stdin line, ``{"method": "bdev_uring_rescan",
"params": {"name": "u0"}}``, calling that :class:`Engine` method and
answering ``{"result": ...}`` or ``{"error": "..."}`` on one stdout line.
stdin EOF or SIGTERM stop the engine (controller sockets removed).

:class:`EngineTarget(config, workdir)` is the test side: ``start()`` (waits
for READY, bounded), ``call(method, **params)``, ``kill9()``, ``stop()``,
``log(tail=None)``; a ``with`` block always stops it.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TargetError(Exception):
    """The target process failed to start or to answer."""


class EngineTarget:
    """A ``python -m tests.support.vhost_target`` child process."""

    def __init__(self, config, workdir, name="target"):
        self.config = dict(config)
        self.workdir = Path(workdir)
        self.config_path = self.workdir / ("%s.json" % name)
        self.log_path = self.workdir / ("%s.log" % name)
        self.proc = None
        self.starts = 0

    def start(self, timeout=30):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config))
        env = dict(os.environ)
        # The child imports this checkout (tests.support and spdk_backend).
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.vhost_target",
                 str(self.config_path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                cwd=str(ROOT), env=env, start_new_session=True)
        self.starts += 1
        try:
            line = self._readline(timeout)
        except TargetError:
            self.kill9()
            raise
        if line.strip() != "READY":
            self.kill9()
            raise TargetError("target said %r instead of READY:\n%s"
                              % (line, self.log(6000)))
        return self

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TargetError("target silent for %ss:\n%s"
                                  % (timeout, self.log(6000)))
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 1)
            if not chunk:
                raise TargetError("target exited (%s):\n%s"
                                  % (self.proc.poll(), self.log(6000)))
            buf += chunk
        return buf.decode("utf-8", "replace")

    def call(self, method, timeout=30, **params):
        """Call Engine.<method>(**params) in the target; its result."""
        self.proc.stdin.write((json.dumps({"method": method, "params": params})
                               + "\n").encode())
        self.proc.stdin.flush()
        reply = json.loads(self._readline(timeout))
        if "error" in reply:
            raise TargetError("%s failed: %s" % (method, reply["error"]))
        return reply["result"]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL (a crash): nothing is cleaned up by the target."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            self._close_pipes()

    def _close_pipes(self):
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def stop(self, timeout=20):
        """Orderly stop (stdin EOF, then SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        if self.alive():
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        self._close_pipes()

    def log(self, tail=None):
        """What the target logged (all of it, or the last `tail` chars)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:] if tail else text

    def cleanup(self):
        self.stop()
        for path in (self.config_path, self.log_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False


def _create(eng, config):
    for b in config.get("bdevs", ()):
        kind = b["type"]
        if kind == "uring":
            eng.bdev_uring_create(b["name"], b["filename"], b.get("block_size", 0))
        elif kind == "malloc":
            eng.bdev_malloc_create(b["name"], b["num_blocks"], b.get("block_size", 512))
        elif kind == "null":
            eng.bdev_null_create(b["name"], b["num_blocks"], b.get("block_size", 512))
        else:
            raise SystemExit("unknown bdev type %r" % kind)
    for c in config.get("controllers", ()):
        eng.vhost_create_blk_controller(c["ctrlr"], c["dev_name"],
                                        cpumask=c.get("cpumask"),
                                        readonly=c.get("readonly", False),
                                        max_queues=c.get("max_queues", 0),
                                        serial=c.get("serial"),
                                        packed_ring=c.get("packed_ring", False))


def main(argv):
    from spdk_backend.engine import Engine

    with open(argv[1]) as f:
        config = json.load(f)

    def _term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _term)
    out = sys.stdout
    eng = Engine(core_mask=config.get("core_mask", "0x1"),
                 max_delay_us=config.get("max_delay_us", 1000),
                 vhost_socket_dir=config["socket_dir"], no_pin=config.get("no_pin", True))
    eng.start()
    try:
        _create(eng, config)
        out.write("READY\n")
        out.flush()
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                result = getattr(eng, req["method"])(**req.get("params", {}))
                reply = {"result": result}
            except Exception as exc:  # reported to the test, which decides
                reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
            out.write(json.dumps(reply, default=repr) + "\n")
            out.flush()
    finally:
        eng.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
