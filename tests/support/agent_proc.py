"""A real ``spdk-backend-agent`` process for functional and e2e tests.

``AgentProcess(base_dir)`` writes a config file with every path under
``base_dir`` (state, RPC socket, vhost sockets), starts the daemon and waits
until it answers ``spdk_get_version``.  ``stop()`` sends SIGTERM and waits;
``kill9()`` simulates a crash; ``log()`` returns what the daemon printed.
Leaving the ``with`` block always stops it.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from spdk_backend.agent import client as agent_client


def agent_command():
    """The agent of the interpreter running the tests (never another install on PATH)."""
    return [sys.executable, "-m", "spdk_backend.agent.main"]


class AgentProcess:
    def __init__(self, base_dir, core_mask="0x1", max_delay_us=100, **options):
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
            f.write("[agent]\n")
            for key, value in opts.items():
                f.write("%s = %s\n" % (key, value))
        self.proc = None

    def start(self, wait=True, timeout=30, env=None, service_manager=None):
        """Start the daemon; env: extra environment variables (test hooks).
        With ``service_manager`` (tests/support/fdstore.py) it starts the
        daemon as systemd would, passing its fd store."""
        log = open(self.log_file, "ab")
        argv = agent_command() + ["--config-file", self.conf_file]
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

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited with %s:\n%s" % (self.proc.returncode,
                                                                 self.log()))
            if os.path.exists(self.rpc_socket):
                try:
                    with agent_client.AgentClient(self.rpc_socket, timeout=5,
                                                  connect_timeout=1) as c:
                        c.call("spdk_get_version")
                    return
                except Exception:
                    pass
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError("agent not ready in %ss:\n%s" % (timeout, self.log()))

    def wait_exit(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def stop(self, timeout=30):
        """SIGTERM and wait; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill9(self):
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
