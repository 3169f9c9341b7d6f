"""The agent's lifecycle: lock, load state, start the engine, replay, serve.

Start order matters: the lock and the state file are checked before the
engine starts, so a second agent or a corrupt state file never touches the
reactors or the sockets of the running one.
"""

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import signal
import time

from spdk_backend import __version__
from spdk_backend import exception
from spdk_backend.agent import dispatcher as agent_dispatcher
from spdk_backend.agent import handoff as agent_handoff
from spdk_backend.agent import jsonrpc
from spdk_backend.agent import methods  # noqa: F401  (registers the methods)
from spdk_backend.agent import sdnotify
from spdk_backend.agent import server as agent_server
from spdk_backend.agent import state as agent_state

LOG = logging.getLogger(__name__)

LOCK_FILE = "agent.lock"
# framework_upgrade answers before the agent hands over.
UPGRADE_GRACE_S = 0.2


class AgentLockedError(exception.ConfigurationError):
    msg_fmt = ("another spdk-backend-agent (pid %(pid)s) is using state_dir %(dir)s "
               "(it holds %(path)s); stop it first or give this agent its own state_dir")


class StateLock:
    """An flock on ``<state_dir>/agent.lock``, held for the agent's life."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, LOCK_FILE)
        self.fd = None

    def adopt(self, fd):
        """Hold the lock a previous process of this agent handed over (same
        open file, so the same flock); False when fd is not that lock."""
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        if not same:
            return False
        os.set_inheritable(fd, False)
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d\n" % os.getpid(), 0)
        self.fd = fd
        return True

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
    state.log_changes = False
    try:
        return _replay(disp, state, config)
    finally:
        state.log_changes = True


def _replay(disp, state, config):
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
        self.dispatcher = None
        self.server = None
        self._stop = None
        self._loop = None
        self._upgrade = False
        self._stop_requested = False  # SIGTERM/SIGINT: stop, even mid-upgrade
        self._rpc_fd = None         # the RPC listening socket, between two processes
        self.handoff = None         # what the previous process handed over
        self.predecessor = None     # the process handing over to this one
        self.upgrade_failed = None  # the last upgrade that failed: {"at", "reason"}
        self._engine_log = None     # engine_log.Forwarder while the engine runs
        self.metrics = None         # metrics.Exporter while it serves (metrics_port)

    def _start_engine(self):
        os.makedirs(self.opts.vhost_socket_dir, mode=0o750, exist_ok=True)
        if self._engine_factory is None and self._engine_log is None:
            # The engine's lines join the agent's log (engine_log.py).
            from spdk_backend import engine_log
            self._engine_log = engine_log.forward()
        self.engine = self._make_engine()
        self.engine.start()
        LOG.info("engine started on cores %s", getattr(self.engine, "cores", "?"))

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

    def _start_metrics(self):
        """Start the Prometheus exporter when ``metrics_port`` is set (once the
        engine runs and the agent serves); a failure is logged, never fatal."""
        port = getattr(self.opts, "metrics_port", None)
        if not port or self.metrics is not None:
            return
        address = getattr(self.opts, "metrics_address", None) or "127.0.0.1"
        try:
            from spdk_backend.agent import metrics  # prometheus_client: only when asked
            self.metrics = metrics.start_exporter(lambda: self.engine, address, port,
                                                  version=__version__)
        except Exception:
            LOG.exception("metrics: the Prometheus exporter cannot start; the agent "
                          "serves without it")

    def _stop_metrics(self):
        """Close the exporter's port (a successor binds it) and keep scrapes
        off the engine; before the engine stops."""
        exporter, self.metrics = self.metrics, None
        if exporter is not None:
            try:
                exporter.stop()
            except Exception:
                LOG.exception("metrics: stopping the Prometheus exporter failed")

    def _take_handoff(self, handoff=None, source="upgrade"):
        """What the previous process of this agent handed over, if it did: in
        ``handoff``, over the handover socket (this process is a successor),
        or by an exec (an earlier release)."""
        self._handoff_source = source
        if handoff is None and self.predecessor is not None:
            pred, self.predecessor = self.predecessor, None
            try:
                handoff = pred.receive(timeout=2 * agent_handoff.SUCCESSOR_START_S)
            except agent_handoff.HandoffError as exc:
                raise exception.SpdkBackendException(
                    "no handover from the serving process (it goes on serving): %s" % exc)
            pred.wait_go()
        if handoff is None:
            self._handoff_source = "exec"
            try:
                handoff = agent_handoff.take()
            except agent_handoff.HandoffError as exc:
                LOG.error("%s", exc)
        self.handoff = handoff
        if self.handoff is None:
            return
        LOG.info("taking over from process %s (agent %s): %d controller(s), %d session(s)",
                 self.handoff.pid, self.handoff.agent_version,
                 len(self.handoff.controllers), len(self.handoff.sessions))
        if self.handoff.lock_fd is not None and not self.lock.adopt(self.handoff.lock_fd):
            LOG.warning("the handed-over lock is not %s; taking it anew", self.lock.path)
            agent_handoff.close_fds([self.handoff.lock_fd])
        self._rpc_fd = self.handoff.rpc_fd

    def _stage_handoff(self):
        """Give the sessions to the engine before the controllers are re-created."""
        records = self.handoff.controllers
        try:
            self.engine.vhost_handoff_stage(records)
        except exception.SpdkBackendException as exc:
            LOG.error("handed-over sessions refused (their guests reconnect where QEMU "
                      "was told to): %s", exc)
            agent_handoff.close_fds(fd for rec in records
                                    for fd in agent_handoff.record_fds(rec))
            return False
        return True

    def _stage_sessions(self):
        """Give the engine the sessions a previous process left, before the
        controllers are re-created: handed over by an upgrade, or
        kept in the service manager's fd store (a crash).  Also starts
        storing this process's sessions.  (staged, source, session names)."""
        passed = sdnotify.listen_fds()
        store = sdnotify.notify_socket() if getattr(self.opts, "fd_store", False) else None
        if store is not None:
            self.engine.vhost_fdstore_enable(store)
            LOG.info("keeping every session in the service manager's fd store (%s)", store)
        if self.handoff is not None:
            agent_handoff.close_fds(fd for fd, _ in passed)
            return self._stage_handoff(), self._handoff_source, self.handoff.sessions
        ours = [(fd, name) for fd, name in passed if name.startswith("sb/")]
        agent_handoff.close_fds(fd for fd, name in passed if not name.startswith("sb/"))
        if ours and store is None:
            # Stored by a process that kept sessions there; this one does not
            # (fd_store = false): empty the store rather than let it pin
            # guest memory and hand stale sessions back after a later crash.
            LOG.warning("fd_store is off: dropping %d fd(s) a previous process stored; "
                        "its guests reconnect where QEMU was told to", len(ours))
            for _, name in ours:
                sdnotify.notify("FDSTOREREMOVE=1\nFDNAME=%s" % name)
            agent_handoff.close_fds(fd for fd, _ in ours)
            ours = []
        if not ours:
            return False, None, []
        handed = sorted(self.engine.vhost_fdstore_restore(ours))
        LOG.info("the fd store gave back %d fd(s): %d session(s) to take over (%s)",
                 len(ours), len(handed), ", ".join(handed) or "none")
        return True, "fd store", handed

    def prepare(self, handoff=None, source="upgrade"):
        """Lock, load the state file and start the engine (no socket yet).

        A successor (started by a serving agent to take over from it) starts
        its engine first, says it is ready, and only then takes the handoff:
        what comes before is not part of the guests' pause."""
        os.makedirs(self.opts.state_dir, mode=0o750, exist_ok=True)
        if handoff is None:
            self.predecessor = agent_handoff.Predecessor.from_environ()
        try:
            if self.predecessor is not None:
                self._start_engine()
                # A state file this version cannot read stops it here, while
                # the old process still serves (read-only: no lock needed).
                agent_state.load_file(self.state.path)
                self.predecessor.ready()
            self._take_handoff(handoff, source)
            if self.lock.fd is None:
                self.lock.acquire()
        except BaseException:
            if self.handoff is not None:
                agent_handoff.close_fds(self.handoff.fds)
            self.shutdown()
            raise
        try:
            config = agent_state.load_file(self.state.path)
            if self.engine is None:
                self._start_engine()
            ctx = agent_dispatcher.Context(self.engine, self.state,
                                           vhost_socket_dir=self.opts.vhost_socket_dir,
                                           version=__version__,
                                           allowed_backing_dirs=getattr(
                                               self.opts, "allowed_backing_dirs", None),
                                           allowed_block_devices=getattr(
                                               self.opts, "allowed_block_devices", ()))
            ctx.request_upgrade = self.request_upgrade
            ctx.upgrade_failed = self.upgrade_failed
            self.executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="rpc-engine")
            self.dispatcher = agent_dispatcher.Dispatcher(ctx, self.executor)
            staged, source, handed = self._stage_sessions()
            if config is not None:
                # No session to take over: the engine's warnings and errors
                # only (docs/agent.md, "Logging"); with sessions, every line
                # of what became of each.
                with (self._engine_log.quiet() if self._engine_log is not None and not staged
                      else contextlib.nullcontext()):
                    restored, failed = replay(self.dispatcher, config)
                LOG.info("restored %d call(s) from %s (%d failed)", restored,
                         self.state.path, failed)
            if staged:
                lost = self.engine.vhost_handoff_finish()
                if lost:
                    LOG.error("handed-over controller(s) not in the configuration, their "
                              "front-ends disconnected: %s", ", ".join(lost))
                adopted = [c["ctrlr"] for c in self.engine.vhost_get_controllers()
                           if c.get("adopted")]
                LOG.info("took over %d session(s) without a disconnect: %s", len(adopted),
                         ", ".join(adopted) or "none")
                ctx.takeover = {"source": source,
                                "from_pid": self.handoff.pid if self.handoff else None,
                                "from_version": (self.handoff.agent_version
                                                 if self.handoff else None),
                                "handed": handed, "adopted": adopted, "lost": lost}
            self.state.save()
        except BaseException:
            self.shutdown()
            raise

    async def serve(self, handle_signals=True):
        """Serve until SIGTERM/SIGINT (or :meth:`request_stop`)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        if self._stop_requested:    # asked before this loop ran (main's handler)
            self._stop.set()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self._note_stop)
        if handle_signals:
            loop.add_signal_handler(signal.SIGHUP, self.request_upgrade)
        self.server = agent_server.RpcServer(
            self.dispatcher, self.opts.rpc_socket, mode=self.opts.rpc_socket_mode,
            group=self.opts.rpc_socket_group, send_timeout=self.opts.rpc_send_timeout,
            listen_fd=self._rpc_fd)
        self._rpc_fd = None
        try:
            await self.server.start()
            self._start_metrics()
            LOG.info("spdk-backend-agent %s ready (pid %d)", __version__, os.getpid())
            sdnotify.ready("serving %s" % self.opts.rpc_socket)
            await self._stop.wait()
            if self._upgrade and not self._stop_requested:
                LOG.info("upgrade asked: handing every session over")
                self._rpc_fd = self.server.detach()
                self.server.stop_accepting()
                # Calls already taken finish and their replies go out first;
                # the successor reads the state file with all of them.
                await loop.run_in_executor(self.executor, lambda: None)
                await loop.run_in_executor(None, self.state.flush)
                await asyncio.sleep(UPGRADE_GRACE_S / 4)
            else:
                LOG.info("shutting down")
        finally:
            held = set(signals) | ({signal.SIGHUP} if handle_signals else set())
            # No default action in between: blocked while the handlers change.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
            try:
                for sig in signals:
                    loop.remove_signal_handler(sig)
                if handle_signals:
                    loop.remove_signal_handler(signal.SIGHUP)
                    # Not the default actions while it hands over: a second
                    # SIGHUP is ignored, and SIGTERM/SIGINT are noted
                    # (hand_over and run act on them at a safe point).
                    signal.signal(signal.SIGHUP, signal.SIG_IGN)
                    for sig in signals:
                        signal.signal(sig, self.note_stop_signal)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            await self.server.close()

    def request_upgrade(self):
        """Re-execute the agent without disconnecting a guest (SIGHUP,
        framework_upgrade); callable from any thread.  The grace lets the
        RPC that asked get its reply."""
        if self._loop is None:
            return

        def go():
            self._upgrade = True
            self._stop.set()

        self._loop.call_soon_threadsafe(self._loop.call_later, UPGRADE_GRACE_S, go)

    def note_stop_signal(self, signum=None, frame=None):
        """A SIGTERM/SIGINT handler for when no event loop serves: noted, and
        acted on at the next safe point (main() installs it from the start)."""
        self._note_stop()

    def _note_stop(self):
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    def request_stop(self):
        """Stop serving; callable from any thread."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def shutdown(self, keep_lock=False):
        """Stop the engine and release the lock; the state file is kept."""
        self._stop_metrics()
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        # Every change a call made is on disk before the engine goes.  A
        # clean stop folds the log into config.json (that file alone is then
        # the whole configuration); a process that handed over leaves the
        # files to its successor.
        if keep_lock:
            self.state.release()
        else:
            self.state.close(compact=self.lock.fd is not None)
        if self.engine is not None:
            try:
                self.engine.stop()
            finally:
                self.engine = None
        if self._engine_log is not None:
            self._engine_log.close()
            self._engine_log = None
        if not keep_lock:
            self.lock.release()

    def _upgrade_failed(self, reason, taken_back=False):
        LOG.error("upgrade: %s; %s", reason, "taking the sessions back in this process"
                  if taken_back else "going on in this process")
        self.upgrade_failed = {"at": time.time(), "reason": reason}
        if self.dispatcher is not None:
            self.dispatcher.ctx.upgrade_failed = self.upgrade_failed

    def hand_over(self):
        """Start a successor, hand every session over to it and return True
        (this process then exits).  False when that could not be done:
        serving goes on in this process, with its sessions (or it stops,
        when a stop was asked meanwhile: run() sees to that)."""
        try:
            successor = agent_handoff.Successor.spawn()
        except OSError as exc:
            self._upgrade_failed("cannot start %s: %s" % (
                " ".join(agent_handoff.command_line()[1]), exc))
            return False
        LOG.info("upgrade: new process %d started; waiting until it is ready", successor.pid)
        records = None
        try:
            successor.wait_ready()
            if self._stop_requested:
                raise agent_handoff.HandoffError(reason="a stop was asked meanwhile")
            # The successor listens on the exporter's port once it serves;
            # closed here, before the guests' pause (serve() starts it
            # again if the hand-over fails).
            self._stop_metrics()
            try:
                records = self.engine.vhost_handoff_export()
            except exception.SpdkBackendException as exc:
                raise agent_handoff.HandoffError(reason="refused: %s" % exc) from None
            for rec in records:
                if rec["why"]:
                    LOG.warning("controller %s: its session is not handed over (%s): its "
                                "front-end reconnects where it was told to", rec["name"],
                                rec["why"])
            mfd = agent_handoff.write(records, rpc_fd=self._rpc_fd, lock_fd=self.lock.fd,
                                      inheritable=False)
            try:
                fds = agent_handoff.read_doc(mfd)["fds"]
                successor.hand(mfd, fds)
            finally:
                agent_handoff.close_fds([mfd])
            # The successor holds its own copies of every fd now.  Make it
            # the service's main process while this one still holds them all:
            # until the manager has taken MAINPID=, a failure can be undone
            # (after it, this process is no longer the service's).
            if successor.proc.poll() is not None:
                raise agent_handoff.HandoffError(
                    reason="the new process (pid %d) died after it took the handoff"
                           % successor.pid)
            if (not sdnotify.handed_over(successor.pid, "handed over to process %d"
                                         % successor.pid)
                    and sdnotify.notify_socket() is not None):
                raise agent_handoff.HandoffError(
                    reason="the service manager was not told the new main pid")
        except Exception as exc:
            successor.abandon()
            reason = getattr(exc, "kwargs", {}).get("reason") or str(exc)
            if records is None:
                self._upgrade_failed(reason)
                return False
            self._upgrade_failed(reason, taken_back=True)
            self._take_back(records)
            return False
        except BaseException:
            successor.abandon()
            raise
        # Stop the engine before the successor goes on: the bdevs let go of
        # their files (and their locks), which it opens again.
        agent_handoff.close_fds(fd for fd in agent_handoff.Handoff(
            records, rpc_fd=self._rpc_fd).all_fds() if fd != self.lock.fd)
        self._rpc_fd = None
        self.shutdown(keep_lock=True)
        successor.go()
        LOG.info("upgrade: %d session(s) handed to process %d; this process exits",
                 sum(1 for rec in records if rec["conn_fd"] >= 0), successor.pid)
        if self._stop_requested:
            LOG.info("a stop was asked during the upgrade: stopping process %d",
                     successor.pid)
            os.kill(successor.pid, signal.SIGTERM)
        return True

    def _take_back(self, records):
        """After a failed hand-over: adopt the exported sessions again, as a
        new process would (the engine starts anew)."""
        handoff = agent_handoff.Handoff(
            [{k: v for k, v in rec.items() if k != "why"} for rec in records],
            rpc_fd=self._rpc_fd, lock_fd=self.lock.fd, pid=os.getpid(),
            agent_version=__version__)
        handoff.fds = handoff.all_fds()
        self.shutdown(keep_lock=True)
        self.prepare(handoff=handoff, source="taken back")

    def run(self):
        self.prepare()
        while True:
            try:
                asyncio.run(self.serve())
            except BaseException:
                self.shutdown()
                raise
            if not self._upgrade or self._stop_requested:
                self.shutdown()
                return
            self._upgrade = False
            try:
                handed = self.hand_over()
            except BaseException:
                self.shutdown()
                raise
            if handed:
                return
            if self._stop_requested:
                self.shutdown()
                return
