"""``spdk-backend-agent``: parse options, set up logging, run the agent."""

import logging
import signal
import sys
import time

from oslo_config import cfg

from spdk_backend import __version__
from spdk_backend import conf as sb_conf
from spdk_backend import exception
from spdk_backend.agent import service
from spdk_backend.agent import state as agent_state

LOG = logging.getLogger("spdk_backend.agent")


class Formatter(logging.Formatter):
    """The agent's one line format, the engine's lines included
    (engine_log.py): local time to the microsecond, pid, level, logger."""

    def formatTime(self, record, datefmt=None):
        return "%s.%06d" % (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)),
                            int((record.created % 1) * 1e6))


def setup_logging(opts):
    handler = (logging.FileHandler(opts.log_file) if opts.log_file
               else logging.StreamHandler(sys.stderr))
    handler.setFormatter(Formatter(
        "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if opts.debug else logging.INFO)


def main(argv=None):
    # SIGHUP means "upgrade" once the agent serves (service.Agent.serve);
    # until then, and while it hands over (an exec keeps SIG_IGN), a second
    # one must not kill it: its default action would end every session.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    conf = sb_conf.CONF
    argv = sys.argv[1:] if argv is None else argv
    try:
        conf(argv, project="spdk-backend", prog="spdk-backend-agent",
             version=__version__)
    except cfg.Error as exc:
        print("spdk-backend-agent: %s" % exc, file=sys.stderr)
        return 2
    opts = conf.agent
    setup_logging(opts)
    agent = service.Agent(opts)
    # Until the agent serves (its start, or taking over from an upgrading
    # agent), a stop is noted and done once it can be done cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, agent.note_stop_signal)
    try:
        agent.run()
    except (service.AgentLockedError, agent_state.StateFileError,
            exception.SpdkBackendException, OSError, ValueError) as exc:
        LOG.error("spdk-backend-agent cannot run: %s", exc)
        return 1
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
