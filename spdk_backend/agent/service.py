"""The agent's lifecycle: lock, load state, start the engine, replay, serve.

Start order matters: the lock and the state file are checked before the
engine starts, so a second agent or a corrupt state file never touches the
reactors or the sockets of the running one.
"""

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import signal

from spdk_backend import __version__
from spdk_backend import exception
from spdk_backend.agent import dispatcher as agent_dispatcher
from spdk_backend.agent import jsonrpc
from spdk_backend.agent import methods  # noqa: F401  (registers the methods)
from spdk_backend.agent import server as agent_server
from spdk_backend.agent import state as agent_state

LOG = logging.getLogger(__name__)

LOCK_FILE = "agent.lock"


class AgentLockedError(exception.ConfigurationError):
    msg_fmt = ("another spdk-backend-agent (pid %(pid)s) is using state_dir %(dir)s "
               "(it holds %(path)s); stop it first or give this agent its own state_dir")


class StateLock:
    """An flock on ``<state_dir>/agent.lock``, held for the agent's life."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, LOCK_FILE)
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AgentLockedError(pid=holder, dir=os.path.dirname(self.path),
                                   path=self.path) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d\n" % os.getpid(), 0)
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def replay(disp, config):
    """Re-run the saved calls; failures are logged and kept as pending."""
    state = disp.ctx.state
    restored = failed = 0
    for sub in config.get("subsystems", []):
        name = sub.get("subsystem")
        calls = sub.get("config") or []
        if name not in state.SUBSYSTEM_NAMES:
            if calls:
                LOG.warning("state file: ignoring %d call(s) of unknown subsystem %s",
                            len(calls), name)
            continue
        for call in calls:
            try:
                disp.run_sync(call["method"], call.get("params"), persist=False)
                restored += 1
            except jsonrpc.RpcError as exc:
                failed += 1
                LOG.error("could not restore %s %s: %s (kept in the state file; it is "
                          "retried at the next start, or delete it by name)",
                          call["method"], call.get("params"), exc.message)
                state.add_pending(name, call)
    return restored, failed


class Agent:
    """One agent process: owns the engine, the RPC socket and the state."""

    def __init__(self, opts, engine_factory=None):
        self.opts = opts
        self._engine_factory = engine_factory
        self.engine = None
        self.lock = StateLock(opts.state_dir)
        self.state = agent_state.AgentState(opts.state_dir)
        self.executor = None
        self.server = None
        self._stop = None
        self._loop = None

    def _make_engine(self):
        if self._engine_factory is not None:
            return self._engine_factory(self.opts)
        from spdk_backend import engine  # the native extension: import late
        return engine.Engine(core_mask=self.opts.core_mask,
                             max_delay_us=self.opts.max_delay_us,
                             spin_us=getattr(self.opts, "spin_us", 0),
                             vhost_socket_dir=self.opts.vhost_socket_dir,
                             no_pin=self.opts.no_pin,
                             vhost_socket_mode=getattr(self.opts, "vhost_socket_mode", None),
                             vhost_socket_group=getattr(self.opts, "vhost_socket_group", None))

    def prepare(self):
        """Lock, load the state file and start the engine (no socket yet)."""
        os.makedirs(self.opts.state_dir, mode=0o750, exist_ok=True)
        self.lock.acquire()
        try:
            config = agent_state.load_file(self.state.path)
            os.makedirs(self.opts.vhost_socket_dir, mode=0o750, exist_ok=True)
            self.engine = self._make_engine()
            self.engine.start()
            LOG.info("engine started on cores %s", getattr(self.engine, "cores", "?"))
            ctx = agent_dispatcher.Context(self.engine, self.state,
                                           vhost_socket_dir=self.opts.vhost_socket_dir,
                                           version=__version__,
                                           allowed_backing_dirs=getattr(
                                               self.opts, "allowed_backing_dirs", None),
                                           allowed_block_devices=getattr(
                                               self.opts, "allowed_block_devices", ()))
            self.executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="rpc-engine")
            self.dispatcher = agent_dispatcher.Dispatcher(ctx, self.executor)
            if config is not None:
                restored, failed = replay(self.dispatcher, config)
                LOG.info("restored %d call(s) from %s (%d failed)", restored,
                         self.state.path, failed)
            self.state.save()
        except BaseException:
            self.shutdown()
            raise

    async def serve(self, handle_signals=True):
        """Serve until SIGTERM/SIGINT (or :meth:`request_stop`)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self._stop.set)
        self.server = agent_server.RpcServer(
            self.dispatcher, self.opts.rpc_socket, mode=self.opts.rpc_socket_mode,
            group=self.opts.rpc_socket_group, send_timeout=self.opts.rpc_send_timeout)
        try:
            await self.server.start()
            LOG.info("spdk-backend-agent %s ready (pid %d)", __version__, os.getpid())
            await self._stop.wait()
            LOG.info("shutting down")
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self.server.close()

    def request_stop(self):
        """Stop serving; callable from any thread."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def shutdown(self):
        """Stop the engine and release the lock; the state file is kept."""
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        if self.engine is not None:
            try:
                self.engine.stop()
            finally:
                self.engine = None
        self.lock.release()

    def run(self):
        self.prepare()
        try:
            asyncio.run(self.serve())
        finally:
            self.shutdown()
