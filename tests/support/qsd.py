"""qemu-storage-daemon as an independent vhost-user-blk target for tests.

``QsdExport(sock_path, blockdev, writable=True, num_queues=1,
logical_block_size=512)`` starts ``qemu-storage-daemon --blockdev BLOCKDEV
--export type=vhost-user-blk,...`` and waits until the socket accepts
connections; ``stop()`` (or leaving the ``with`` block) terminates it and
removes the socket.  ``blockdev`` is a dict of ``--blockdev`` options without
``node-name``, e.g. ``file_blockdev(path)`` or ``null_blockdev(size)``.
"""

import signal
import subprocess
import time
from pathlib import Path


def file_blockdev(path, aio=None, cache_direct=False):
    """--blockdev options for a raw file."""
    opts = {"driver": "file", "filename": str(path)}
    if aio:
        opts["aio"] = aio
    if cache_direct:
        opts["cache.direct"] = "on"
    return opts


def null_blockdev(size, read_zeroes=False):
    """--blockdev options for a null-co device of `size` bytes."""
    return {"driver": "null-co", "size": str(int(size)),
            "read-zeroes": "on" if read_zeroes else "off"}


def _opts(d):
    return ",".join("%s=%s" % (k, v) for k, v in d.items())


class QsdExport:
    """A running qemu-storage-daemon vhost-user-blk export."""

    def __init__(self, sock_path, blockdev, writable=True, num_queues=1,
                 logical_block_size=512, extra_args=(), log_path=None,
                 start_timeout=10):
        self.sock_path = Path(sock_path)
        self.blockdev = dict(blockdev)
        self.writable = writable
        self.num_queues = num_queues
        self.logical_block_size = logical_block_size
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else \
            self.sock_path.with_suffix(".qsd.log")
        self.start_timeout = start_timeout
        self.proc = None

    def command(self):
        export = {"type": "vhost-user-blk", "id": "e0", "node-name": "n0",
                  "addr.type": "unix", "addr.path": str(self.sock_path),
                  "writable": "on" if self.writable else "off",
                  "num-queues": str(self.num_queues),
                  "logical-block-size": str(self.logical_block_size)}
        blockdev = dict(self.blockdev, **{"node-name": "n0"})
        return (["qemu-storage-daemon", "--blockdev", _opts(blockdev),
                 "--export", _opts(export)] + self.extra_args)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self):
        try:
            self.sock_path.unlink()
        except FileNotFoundError:
            pass
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(),
                                         stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("qemu-storage-daemon exited %d: %s"
                                   % (self.proc.returncode, self.log()))
            if self.sock_path.exists():
                # The daemon listens once the socket exists; a probe
                # connection would be taken as a vhost-user front-end and
                # occupy the export, so do not connect here.
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("qemu-storage-daemon did not create %s"
                                   % self.sock_path)
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for path in (self.sock_path, self.log_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
