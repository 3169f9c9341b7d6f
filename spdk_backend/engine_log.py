"""The engine's log lines, in Python's logging: one stream, one format, one level.

The C engine logs from its reactors and control thread (native/lib/log).
``forward()`` has it write each line as a record to a pipe it never waits
for (a line the pipe has no room for is dropped and counted, and the next
one says so), and a thread here turns each record into a ``LogRecord`` of
the logger ``spdk_backend.engine``: its level, the engine's own time stamp,
and a message naming the engine thread and the source location (also as
the record's pathname, lineno and funcName, which journald gets as
CODE_FILE, CODE_LINE and CODE_FUNC).  The engine's level is the logger's
when ``forward()`` is called (``DEBUG`` shows every vhost-user message the
engine receives).  Records flow to whatever handlers the program set up:
the agent's are oslo.log's (agent/main.py: standard output, ``log_file``,
the journal, or a ``log_config_append`` file).
"""

import contextlib
import fcntl
import logging
import os
import threading

from spdk_backend._native import ffi, lib  # noqa: F401  (ffi: the module's pair)

LOGGER = "spdk_backend.engine"

# The engine's levels (sb/log.h) as Python's.
_TO_PYTHON = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.INFO,
              4: logging.DEBUG}
_NAMES = {0: "ERROR", 1: "WARN", 2: "NOTICE", 3: "INFO", 4: "DEBUG"}


def engine_level(python_level):
    """The engine's level that emits what a logger at ``python_level`` shows."""
    if python_level <= logging.DEBUG:
        return 4
    if python_level <= logging.INFO:
        return 3
    if python_level <= logging.WARNING:
        return 1
    return 0


def parse(line):
    """A LogRecord of one pipe record (bytes without the newline), or None."""
    try:
        level, stamp, thread, where, func, msg = line.decode("utf-8", "replace").split("\t", 5)
        level = int(level)
        created = float(stamp)
        path, _, lineno = where.rpartition(":")
        lineno = int(lineno)
    except ValueError:
        return None
    record = logging.LogRecord(LOGGER, _TO_PYTHON.get(level, logging.ERROR), path, lineno,
                               "%s %s %s: %s", (thread, where, func, msg), None, func=func)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    record.engine_level = _NAMES.get(level, str(level))
    record.engine_thread = thread
    return record


class Forwarder:
    """Engine lines -> ``logging.getLogger(LOGGER)``, until ``close()``."""

    def __init__(self, logger=None):
        self.logger = logger or logging.getLogger(LOGGER)
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(wfd, False)
        try:
            # Room for bursts (a reactor never waits for this reader).
            fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        self._rfd, self._wfd = rfd, wfd
        self._level = lib.sb_log_get_level()
        lib.sb_log_set_level(engine_level(self.logger.getEffectiveLevel()))
        lib.sb_log_set_pipe(wfd)
        lib.sb_log_set_stderr(0)
        self._thread = threading.Thread(target=self._run, name="engine-log", daemon=True)
        self._thread.start()

    def _run(self):
        buf = b""
        try:
            with os.fdopen(self._rfd, "rb", buffering=0) as f:
                while True:
                    chunk = f.read(1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        record = parse(line)
                        if record is None or not self.logger.isEnabledFor(record.levelno):
                            continue
                        try:
                            self.logger.handle(record)
                        except Exception:  # a filter or handler of the program's
                            pass
        finally:
            # Whatever ended this reader, the engine's lines go to stderr again.
            lib.sb_log_set_pipe(-1)
            lib.sb_log_set_stderr(1)

    @contextlib.contextmanager
    def quiet(self):
        """Only the engine's warnings and errors while in the block, unless
        the logger shows DEBUG (the agent's start: a line per bdev and per
        controller restored would cost it more than the restore itself)."""
        if self.logger.isEnabledFor(logging.DEBUG):
            yield
            return
        level = lib.sb_log_get_level()
        lib.sb_log_set_level(min(level, engine_level(logging.WARNING)))
        try:
            yield
        finally:
            lib.sb_log_set_level(level)

    @staticmethod
    def dropped():
        """Engine lines dropped because this reader was behind."""
        return lib.sb_log_pipe_dropped()

    def close(self):
        """Back to stderr and the level before; every line written so far is
        logged first."""
        lib.sb_log_set_stderr(1)
        lib.sb_log_set_pipe(-1)
        lib.sb_log_set_level(self._level)
        os.close(self._wfd)
        self._thread.join(10)


def forward(logger=None):
    """Send the engine's log to ``logger`` (default ``spdk_backend.engine``)."""
    return Forwarder(logger)
