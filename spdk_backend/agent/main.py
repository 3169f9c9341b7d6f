"""``spdk-backend-agent``: parse options, set up logging, run the agent.

Logging is oslo.log's, as in every OpenStack service: ``[DEFAULT] debug``,
``log_file``, ``log_dir``, ``log_config_append``, ``use_journal`` and the
rest of its options (agent.conf.sample).  The engine's lines are records of
the logger ``spdk_backend.engine`` (engine_log.py) and go wherever oslo.log
sends the agent's, at that logger's level.
"""

import logging
import signal
import sys

from oslo_config import cfg
from oslo_log import log as oslo_logging
from oslo_log import versionutils

from spdk_backend import __version__
from spdk_backend import conf as sb_conf
from spdk_backend import exception
from spdk_backend.agent import service
from spdk_backend.agent import state as agent_state

LOG = logging.getLogger("spdk_backend.agent")

PROJECT = "spdk-backend"

# [agent] options from before oslo.log, each standing for [DEFAULT]'s of its name.
DEPRECATED_ALIASES = ("debug", "log_file")


class LoggingSetupError(exception.ConfigurationError):
    msg_fmt = "cannot set up logging: %(reason)s"


def register_opts(conf):
    """oslo.log's options on ``conf`` (the agent's are registered with the
    conf package); before the command line is parsed."""
    if "log_config_append" not in conf:
        oslo_logging.register_options(conf)


def apply_deprecated_aliases(conf):
    """Carry ``[agent] debug`` and ``[agent] log_file`` over to oslo.log's
    ``[DEFAULT]`` options; the names of the aliases used.

    Either ``debug`` turns DEBUG on; ``[DEFAULT] log_file`` (or
    ``--log-file``), when set, wins over ``[agent] log_file``.
    """
    used = []
    if conf.agent.debug:
        used.append("debug")
        if not conf.debug:
            conf.set_override("debug", True)
    if conf.agent.log_file:
        used.append("log_file")
        if not conf.log_file:
            conf.set_override("log_file", conf.agent.log_file)
    return used


def _check_journal(conf):
    # oslo.log's journal handler sends with ``from systemd import journal``
    # (systemd-python; Debian's python3-systemd) and fails without it.
    if conf.use_journal and not conf.log_config_append:
        try:
            from systemd import journal  # noqa: F401
        except ImportError:
            raise LoggingSetupError(
                reason="use_journal needs the systemd Python module (systemd-python: "
                       "pip install 'spdk-backend[journal]'; Debian: python3-systemd)")


def setup_logging(conf):
    """Set up oslo.log from ``conf`` (parsed); LoggingSetupError when it cannot."""
    try:
        used = apply_deprecated_aliases(conf)
    except versionutils.DeprecatedConfig as exc:  # fatal_deprecations = true
        raise LoggingSetupError(reason=str(exc)) from exc
    _check_journal(conf)
    try:
        oslo_logging.setup(conf, PROJECT, version=__version__)
    except (oslo_logging.LogConfigError, OSError, ValueError, TypeError,
            RuntimeError) as exc:
        raise LoggingSetupError(reason=str(exc)) from exc
    for name in DEPRECATED_ALIASES:
        if name in used:
            LOG.warning("[agent] %s is deprecated: set [DEFAULT] %s instead (oslo.log's "
                        "option)", name, name)


def main(argv=None, conf=None):
    # SIGHUP means "upgrade" once the agent serves (service.Agent.serve);
    # until then, and while it hands over (an exec keeps SIG_IGN), a second
    # one must not kill it: its default action would end every session.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    conf = sb_conf.CONF if conf is None else conf
    argv = sys.argv[1:] if argv is None else argv
    register_opts(conf)
    try:
        conf(argv, project="spdk-backend", prog="spdk-backend-agent",
             version=__version__)
    except cfg.Error as exc:
        print("spdk-backend-agent: %s" % exc, file=sys.stderr)
        return 2
    try:
        setup_logging(conf)
    except (LoggingSetupError, cfg.Error) as exc:  # cfg.Error: a value it cannot parse
        print("spdk-backend-agent: %s" % exc, file=sys.stderr)
        return 2
    opts = conf.agent
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
