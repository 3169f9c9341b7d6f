"""spdk-backend-agent's logging set-up (agent/main.py): oslo.log's options,
the deprecated ``[agent] debug`` / ``log_file``, and the engine's level.

Each test parses its own agent.conf into its own ConfigOpts and sets up the
process's logging for real; the ``logging_state`` fixture puts every
logger back afterwards.  A real agent process with these options:
tests/functional/agent/test_agent_logging.py.
"""

import logging
import logging.handlers
import signal
import sys
from unittest import mock

import pytest
from oslo_config import cfg
from oslo_log import handlers as oslo_handlers

from spdk_backend.agent import main
from spdk_backend.conf import agent as agent_conf

AGENT_LOG = "spdk_backend.agent"
ENGINE_LOG = "spdk_backend.engine"


@pytest.fixture
def logging_state():
    """Every logger's handlers, level and propagation, sys.excepthook and
    SIGHUP's handler, as they were (oslo.log's set-up and main() change them
    process-wide)."""
    sighup = signal.getsignal(signal.SIGHUP)
    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [lg for lg in list(manager.loggerDict.values())
                                       if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers]
    hook = sys.excepthook
    yield
    signal.signal(signal.SIGHUP, sighup)
    sys.excepthook = hook
    kept = {id(h) for _, _, handlers, _, _ in saved for h in handlers}
    for lg in [logging.getLogger()] + [lg for lg in list(manager.loggerDict.values())
                                       if isinstance(lg, logging.Logger)]:
        for h in lg.handlers:
            if id(h) not in kept:
                h.close()
        lg.setLevel(logging.NOTSET)
        lg.handlers = []
        lg.propagate = True
    for lg, level, handlers, propagate, disabled in saved:
        lg.setLevel(level)
        lg.handlers = handlers
        lg.propagate = propagate
        lg.disabled = disabled


def _conf(tmp_path, text, argv=()):
    path = tmp_path / "agent.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    agent_conf.register_opts(conf)
    main.register_opts(conf)
    conf(["--config-file", str(path)] + list(argv), project="spdk-backend")
    return conf


def _log_lines(path):
    return path.read_text().splitlines() if path.exists() else []


def _engine_level():
    from spdk_backend import engine_log
    return engine_log.engine_level(logging.getLogger(ENGINE_LOG).getEffectiveLevel())


def test_default_debug_and_log_file(tmp_path, logging_state):
    log = tmp_path / "agent.log"
    conf = _conf(tmp_path, "[DEFAULT]\ndebug = true\nlog_file = %s\n" % log)
    main.setup_logging(conf)
    logging.getLogger(AGENT_LOG).debug("a debug line")
    logging.getLogger(AGENT_LOG).info("an info line")
    lines = _log_lines(log)
    # oslo.log's format: time to the ms, pid, level, logger, [-] (no request context).
    assert any(" DEBUG spdk_backend.agent [-] a debug line" in line for line in lines), lines
    assert any(" INFO spdk_backend.agent [-] an info line" in line for line in lines), lines
    # The engine's level follows: 4 (DEBUG) emits every vhost-user message.
    assert _engine_level() == 4


def test_without_debug_no_debug_line_and_engine_at_info(tmp_path, logging_state):
    log = tmp_path / "agent.log"
    conf = _conf(tmp_path, "[DEFAULT]\nlog_file = %s\n" % log)
    main.setup_logging(conf)
    logging.getLogger(AGENT_LOG).debug("a debug line")
    logging.getLogger(AGENT_LOG).info("an info line")
    lines = _log_lines(log)
    assert not any("a debug line" in line for line in lines), lines
    assert any("an info line" in line for line in lines), lines
    assert _engine_level() == 3


def test_nothing_set_logs_to_stdout(tmp_path, logging_state):
    # The journal under systemd (the unit's standard output).
    conf = _conf(tmp_path, "")
    main.setup_logging(conf)
    (handler,) = logging.getLogger().handlers
    assert type(handler) is logging.StreamHandler and handler.stream is sys.stdout


def test_log_dir_holds_a_relative_log_file(tmp_path, logging_state):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    conf = _conf(tmp_path, "[DEFAULT]\nlog_dir = %s\nlog_file = agent.log\n" % logdir)
    main.setup_logging(conf)
    logging.getLogger(AGENT_LOG).info("into log_dir")
    assert any("into log_dir" in line for line in _log_lines(logdir / "agent.log"))


def test_command_line_options(tmp_path, logging_state):
    log = tmp_path / "cli.log"
    conf = _conf(tmp_path, "", argv=["--debug", "--log-file", str(log)])
    main.setup_logging(conf)
    logging.getLogger(AGENT_LOG).debug("from the command line")
    assert any("from the command line" in line for line in _log_lines(log))


@pytest.mark.parametrize("debug", [True, False])
def test_deprecated_agent_options_still_work(tmp_path, logging_state, debug):
    log = tmp_path / "old.log"
    conf = _conf(tmp_path, "[agent]\ndebug = %s\nlog_file = %s\n" % (str(debug).lower(), log))
    main.setup_logging(conf)
    logging.getLogger(AGENT_LOG).debug("old debug")
    lines = _log_lines(log)
    assert any("old debug" in line for line in lines) is debug, lines
    assert _engine_level() == (4 if debug else 3)
    # Said in the log itself (oslo.config's own warning goes to stderr
    # before logging is set up).
    assert any("WARNING spdk_backend.agent [-] [agent] log_file is deprecated: set "
               "[DEFAULT] log_file instead" in line for line in lines), lines
    assert any("[agent] debug is deprecated" in line for line in lines) is debug, lines


def test_default_log_file_wins_over_the_deprecated_one(tmp_path, logging_state):
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    conf = _conf(tmp_path, "[DEFAULT]\nlog_file = %s\n[agent]\nlog_file = %s\n" % (new, old))
    main.setup_logging(conf)
    logging.getLogger(AGENT_LOG).info("where")
    assert any("where" in line for line in _log_lines(new))
    assert not old.exists()


def test_either_debug_turns_debug_on(tmp_path, logging_state):
    log = tmp_path / "agent.log"
    conf = _conf(tmp_path, "[DEFAULT]\ndebug = false\nlog_file = %s\n[agent]\ndebug = true\n"
                 % log)
    main.setup_logging(conf)
    assert _engine_level() == 4


def test_log_config_append_rules_the_levels(tmp_path, logging_state):
    """A logging config file: its handlers and levels; the engine's level
    follows its logger's (DEBUG here, the agent's at INFO)."""
    log = tmp_path / "fromconfig.log"
    logcfg = tmp_path / "logging.conf"
    logcfg.write_text(
        "[loggers]\nkeys = root, engine\n"
        "[handlers]\nkeys = file\n"
        "[formatters]\nkeys = plain\n"
        "[logger_root]\nlevel = INFO\nhandlers = file\n"
        "[logger_engine]\nqualname = spdk_backend.engine\nlevel = DEBUG\nhandlers =\n"
        "[handler_file]\nclass = FileHandler\nformatter = plain\nargs = (%r,)\n"
        "[formatter_plain]\nformat = PLAIN %%(levelname)s %%(name)s %%(message)s\n" % str(log))
    # debug = true is ignored with log_config_append (oslo.log's rule).
    conf = _conf(tmp_path, "[DEFAULT]\ndebug = true\nlog_config_append = %s\n" % logcfg)
    main.setup_logging(conf)
    logging.getLogger(AGENT_LOG).debug("agent debug")
    logging.getLogger(AGENT_LOG).info("agent info")
    logging.getLogger(ENGINE_LOG).debug("engine debug")
    lines = _log_lines(log)
    assert "PLAIN INFO spdk_backend.agent agent info" in lines, lines
    assert "PLAIN DEBUG spdk_backend.engine engine debug" in lines, lines
    assert not any("agent debug" in line for line in lines), lines
    assert _engine_level() == 4


def test_use_journal_without_the_systemd_module(tmp_path, logging_state):
    conf = _conf(tmp_path, "[DEFAULT]\nuse_journal = true\n")
    with mock.patch.dict(sys.modules, {"systemd": None, "systemd.journal": None}):
        with pytest.raises(main.LoggingSetupError) as err:
            main.setup_logging(conf)
    assert "use_journal needs the systemd Python module" in str(err.value)
    assert "spdk-backend[journal]" in str(err.value) and "python3-systemd" in str(err.value)


def test_use_journal_sends_each_record_with_its_fields(tmp_path, logging_state):
    """The handler oslo.log adds, with systemd-python's journal.send
    replaced (journald itself: the functional test)."""
    journal = pytest.importorskip("systemd.journal")
    conf = _conf(tmp_path, "[DEFAULT]\nuse_journal = true\ndebug = true\n")
    sent = []
    with mock.patch.object(journal, "send", lambda msg, **kw: sent.append((msg, kw))):
        main.setup_logging(conf)
        assert any(isinstance(h, oslo_handlers.OSJournalHandler)
                   for h in logging.getLogger().handlers)
        # Only the journal: nothing on stdout besides.
        assert not any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)
        from spdk_backend import engine_log
        record = engine_log.parse(b"4\t1796614177.5\tvhost\tvhost_msg.c:42\thandle\t"
                                  b"vhost v0: SET_MEM_TABLE")
        logging.getLogger(ENGINE_LOG).handle(record)
        logging.getLogger(AGENT_LOG).info("agent line")
    engine = [kw for msg, kw in sent if kw["LOGGER_NAME"] == ENGINE_LOG]
    assert engine and engine[0]["CODE_FILE"] == "vhost_msg.c"
    assert engine[0]["CODE_LINE"] == 42 and engine[0]["CODE_FUNC"] == "handle"
    assert engine[0]["PRIORITY"] == 7       # DEBUG
    agent = [(msg, kw) for msg, kw in sent if kw["LOGGER_NAME"] == AGENT_LOG]
    assert any("agent line" in msg and kw["PRIORITY"] == 6 for msg, kw in agent), sent


def test_main_refuses_a_missing_log_config(tmp_path, logging_state, capsys):
    path = tmp_path / "agent.conf"
    path.write_text("[DEFAULT]\nlog_config_append = %s\n" % (tmp_path / "missing.conf"))
    conf = cfg.ConfigOpts()
    agent_conf.register_opts(conf)
    assert main.main(["--config-file", str(path)], conf=conf) == 2
    err = capsys.readouterr().err
    assert "spdk-backend-agent: cannot set up logging:" in err
    assert "missing.conf" in err


def test_main_refuses_use_journal_without_the_module(tmp_path, logging_state, capsys):
    path = tmp_path / "agent.conf"
    path.write_text("[DEFAULT]\nuse_journal = true\n")
    conf = cfg.ConfigOpts()
    agent_conf.register_opts(conf)
    with mock.patch.dict(sys.modules, {"systemd": None, "systemd.journal": None}):
        assert main.main(["--config-file", str(path)], conf=conf) == 2
    assert "use_journal needs the systemd Python module" in capsys.readouterr().err


def test_main_refuses_a_bad_logging_value(tmp_path, logging_state, capsys):
    path = tmp_path / "agent.conf"
    path.write_text("[DEFAULT]\nuse_stderr = maybe\n")
    conf = cfg.ConfigOpts()
    agent_conf.register_opts(conf)
    assert main.main(["--config-file", str(path)], conf=conf) == 2
    err = capsys.readouterr().err
    assert err.startswith("spdk-backend-agent: ") and "use_stderr" in err and "maybe" in err


def test_log_file_is_reopened_after_rotation(tmp_path, logging_state):
    """WatchedFileHandler: logrotate's move-and-create needs no signal."""
    log = tmp_path / "agent.log"
    conf = _conf(tmp_path, "[DEFAULT]\nlog_file = %s\n" % log)
    main.setup_logging(conf)
    assert any(isinstance(h, logging.handlers.WatchedFileHandler)
               for h in logging.getLogger().handlers)
    logging.getLogger(AGENT_LOG).info("before")
    log.rename(tmp_path / "agent.log.1")
    logging.getLogger(AGENT_LOG).info("after")
    assert any("after" in line for line in _log_lines(log))
    assert not any("after" in line for line in _log_lines(tmp_path / "agent.log.1"))
