"""A real ``spdk-backend-agent`` process for functional and e2e tests.

``AgentProcess(base_dir)`` writes a config file with every path under
``base_dir`` (state, RPC socket, vhost sockets), starts the daemon and waits
until it answers ``spdk_get_version``.  ``stop()`` sends SIGTERM and waits;
``kill9()`` simulates a crash; ``log()`` returns what the daemon printed.
Leaving the ``with`` block always stops it.

An upgrade hands the agent over to a new process (agent/handoff.py) that
is not the test's child: ``wait_ready()`` and ``wait_upgraded()`` follow it
(``proc`` becomes a ``ProcessHandle`` on its pid).
"""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from spdk_backend.agent import client as agent_client
from tests.support.pidhandle import ProcessHandle


def agent_command():
    """The agent of the interpreter running the tests (never another install on PATH)."""
    return [sys.executable, "-m", "spdk_backend.agent.main"]


class AgentProcess:
    """``options`` go in ``[agent]``, ``defaults`` (oslo.log's, for one) in
    ``[DEFAULT]``."""

    def __init__(self, base_dir, core_mask="0x1", max_delay_us=100, defaults=None,
                 **options):
        self.base_dir = base_dir
        self.rpc_socket = os.path.join(base_dir, "rpc.sock")
        self.vhost_socket_dir = os.path.join(base_dir, "vhost")
        self.state_dir = os.path.join(base_dir, "state")
        self.state_file = os.path.join(self.state_dir, "config.json")
        self.conf_file = os.path.join(base_dir, "agent.conf")
        self.log_file = os.path.join(base_dir, "agent.log")
        opts = {"core_mask": core_mask, "max_delay_us": max_delay_us, "no_pin": "true",
                "rpc_socket": self.rpc_socket, "vhost_socket_dir": self.vhost_socket_dir,
                "state_dir": self.state_dir,
                # Tests keep their images in pytest's temporary directories.
                "allowed_backing_dirs": tempfile.gettempdir()}
        opts.update(options)
        with open(self.conf_file, "w") as f:
            if defaults:
                f.write("[DEFAULT]\n")
                for key, value in defaults.items():
                    f.write("%s = %s\n" % (key, value))
            f.write("[agent]\n")
            for key, value in opts.items():
                f.write("%s = %s\n" % (key, value))
        self.proc = None

    def start(self, wait=True, timeout=30, env=None, service_manager=None, command=None,
              prefix=()):
        """Start the daemon; env: extra environment variables (test hooks).
        With ``service_manager`` (tests/support/fdstore.py) it starts the
        daemon as systemd would, passing its fd store.  ``command``: the
        agent's program (default agent_command()); ``prefix``: a program
        that execs it (nsenter, say)."""
        log = open(self.log_file, "ab")
        argv = (list(prefix) + list(command or agent_command())
                + ["--config-file", self.conf_file])
        try:
            if service_manager is not None:
                self.proc = service_manager.start(
                    argv, env=dict(os.environ, **env) if env else None, stdout=log)
            else:
                self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL,
                                             env=dict(os.environ, **env) if env else None)
        finally:
            log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def _process(self):
        """framework_get_process of the agent answering now, or None."""
        if not os.path.exists(self.rpc_socket):
            return None
        try:
            with agent_client.AgentClient(self.rpc_socket, timeout=5,
                                          connect_timeout=1) as c:
                return c.call("framework_get_process")
        except Exception:
            return None

    def follow(self, pid):
        """The agent is process ``pid`` now (it took over from ``proc``)."""
        if self.proc is None or pid != self.proc.pid:
            if self.proc is not None:
                try:
                    self.proc.wait(30)  # the old process exits once it handed over
                except subprocess.TimeoutExpired:
                    pass
            self.proc = ProcessHandle(pid)

    def wait_ready(self, timeout=30):
        """Until the agent answers; follows a process that took over.  An
        agent that exited with status 0 may have handed over: only an
        answer or the timeout ends the wait then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None and rc != 0:
                raise RuntimeError("agent exited with %s:\n%s" % (rc, self.log()))
            proc = self._process()
            if proc is not None:
                self.follow(proc["pid"])
                return proc
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError("agent not ready in %ss:\n%s" % (timeout, self.log()))

    def wait_upgraded(self, started_at, timeout=60):
        """Until a process started after ``started_at`` (framework_get_process)
        answers, and follow it; its framework_get_process."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._process()
            if proc is not None and proc["started_at"] != started_at:
                self.follow(proc["pid"])
                return proc
            time.sleep(0.05)
        raise RuntimeError("no new agent process in %ss:\n%s" % (timeout, self.log()))

    def wait_exit(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def _follow_lock_holder(self):
        """After an upgrade nobody followed: the process holding the state
        lock (it writes its pid there) is the agent."""
        if self.proc is None or self.proc.poll() is None:
            return
        try:
            with open(os.path.join(self.state_dir, "agent.lock")) as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return  # nobody holds it: no agent
                except BlockingIOError:
                    pass
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return
        if pid > 0 and pid != self.proc.pid:
            try:
                self.proc = ProcessHandle(pid)
            except ProcessLookupError:
                pass

    def stop(self, timeout=30):
        """SIGTERM and wait; the exit code."""
        self._follow_lock_holder()
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill9(self):
        self._follow_lock_holder()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self, timeout=60):
        return agent_client.AgentClient(self.rpc_socket, timeout=timeout, connect_timeout=10)

    def log(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.kill9()


class ThreadedAgent:
    """service.Agent with the real engine in this process, serving in a
    thread: Agent.run's loop without signal handlers.  ``failed_upgrades``
    counts hand-overs that left this process serving; ``error`` is what
    ended the loop unexpectedly.  A context manager, or start()/stop()."""

    def __init__(self, opts):
        from spdk_backend.agent import service  # the engine: only for these tests
        self.agent = service.Agent(opts)
        self.error = None
        self.thread = None
        self.failed_upgrades = 0

    def _run(self):
        import asyncio
        try:
            while True:
                asyncio.run(self.agent.serve(handle_signals=False))
                if not self.agent._upgrade:
                    return
                self.agent._upgrade = False
                if self.agent.hand_over():
                    return
                self.failed_upgrades += 1
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def start(self):
        self.agent.prepare()
        self.thread = threading.Thread(target=self._run, name="agent", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.agent._stop is None:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.stop()
                raise AssertionError("the in-process agent did not serve: %r" % self.error)
            time.sleep(0.05)
        return self

    def stop(self):
        try:
            # Asked again until the thread ends: it may be between two
            # serve() loops (a hand-over that failed serves anew).
            deadline = time.monotonic() + 30
            while self.thread is not None and self.thread.is_alive() and \
                    time.monotonic() < deadline:
                loop = self.agent._loop
                if self.agent._stop is not None and loop is not None and loop.is_running():
                    try:
                        self.agent.request_stop()
                    except RuntimeError:  # that loop closed meanwhile
                        pass
                self.thread.join(0.1)
        finally:
            self.agent.shutdown()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
