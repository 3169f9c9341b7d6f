"""Progress of the CLI's waits on a terminal.

Every wait of a command (a guest releasing a disk, QEMU closing a
controller's socket, a live attach, the agent coming back after an
upgrade, the agent answering, ``status``'s sampling interval) runs inside
:func:`waiting`.  When stderr is a terminal and the wait has lasted
:data:`DELAY` seconds, one line on stderr says what is being waited for and
for how long, rewritten every :data:`INTERVAL` seconds, and erased when the
wait ends.  When stderr is not a terminal (scripts, tests, logs) nothing is
written, so the output is the same as without it.
"""

import contextlib
import sys
import threading
import time

# Waits shorter than this show nothing.
DELAY = 1.0
# How often the line is rewritten.
INTERVAL = 1.0
# Goes back to the start of the line and erases it.
_ERASE = "\r\x1b[K"

_active = threading.local()


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


def format_line(what, elapsed, limit=None):
    """``waiting for <what>: 3s`` (``... 3s of at most 30s`` with a limit)."""
    text = "spdk-backend: waiting for %s: %ds" % (what, elapsed)
    if limit is not None:
        text += " of at most %gs" % limit
    return text


@contextlib.contextmanager
def waiting(what, limit=None, stream=None):
    """Show progress while the ``with`` block waits for ``what``.

    :param what: what is being waited for, as it follows "waiting for"
        ("the guest of domain vm1 to release disk vdb").
    :param limit: seconds the wait may last at most (shown), or None.
    :param stream: where to write (default: ``sys.stderr`` at the time of
        the call); nothing is written unless it is a terminal.

    A wait inside another one shows nothing of its own: the outer line
    goes on.
    """
    stream = sys.stderr if stream is None else stream
    if getattr(_active, "on", False) or not _isatty(stream):
        yield
        return
    start = time.monotonic()
    stop = threading.Event()
    shown = []

    def show():
        delay = DELAY
        while not stop.wait(delay):
            elapsed = time.monotonic() - start
            try:
                stream.write(_ERASE + format_line(what, elapsed, limit))
                stream.flush()
            except (OSError, ValueError):
                return
            shown.append(True)
            delay = INTERVAL

    thread = threading.Thread(target=show, name="cli-progress", daemon=True)
    _active.on = True
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _active.on = False
        if shown:
            try:
                stream.write(_ERASE)
                stream.flush()
            except (OSError, ValueError):
                pass
