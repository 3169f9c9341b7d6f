"""A handle on a process that is not the test's child.

An agent upgrade hands the service over to a new process started by the
old one (spdk_backend/agent/handoff.py); once the old one exits, the new
one is nobody's child the tests can wait for.  ``ProcessHandle`` gives it
the part of ``subprocess.Popen`` the tests use.
"""

import os
import select
import signal
import subprocess


class ProcessHandle:
    """The Popen calls the tests use, for a process that is not our child
    (a pidfd: the pid cannot be reused under us).  Its exit status is not
    ours to read: ``returncode`` is ``UNKNOWN`` once it has exited."""

    UNKNOWN = -255

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None
        self._fd = os.pidfd_open(pid)

    def poll(self):
        return self.wait(0) if self.returncode is None else self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            if not poller.poll(None if timeout is None else timeout * 1000):
                if timeout == 0:
                    return None
                raise subprocess.TimeoutExpired("pid %d" % self.pid, timeout)
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.returncode = self.UNKNOWN
            os.close(self._fd)
        return self.returncode

    def send_signal(self, sig):
        if self.returncode is None:
            signal.pidfd_send_signal(self._fd, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.send_signal(signal.SIGTERM)
