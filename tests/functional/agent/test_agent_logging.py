"""The agent logs with oslo.log, and the engine's log goes with it (engine_log.py).

A real agent with the real engine, configured by oslo.log's options in
agent.conf's ``[DEFAULT]`` (``debug``, ``log_file``, ``log_dir``,
``log_config_append``, ``use_journal``) or by the deprecated ``[agent]
debug`` / ``log_file``.  The engine's lines arrive in the agent's stream
and format (oslo.log's: ``<local time to the ms> <pid> <LEVEL>
spdk_backend.engine [-] <engine thread> <file:line> <function>:
<message>``), at the level of the logger ``spdk_backend.engine``
(``debug = true`` shows the vhost-user message trace; otherwise no DEBUG
line), and nothing is left on stderr in the engine's own format.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.support import agent_proc
from tests.support import journald

pytestmark = pytest.mark.timeout(120)

ENGINE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (\d+) (DEBUG|INFO|WARNING|ERROR) "
    r"spdk_backend\.engine \[-\] (\S+) ([\w.]+\.c:\d+) (\w+): (.*)$")
C_FORMAT = re.compile(r"^\[\d{4}-\d\d-\d\d ", re.M)


def _connect_once(initiator, sock):
    res = subprocess.run([str(initiator), "--socket", sock, "--rw", "randrw", "--qd", "4",
                          "--time", "0.5", "--size-limit", "4M", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def _serve_a_guest(agent, initiator):
    """A controller a front-end connects to once; the agent's pid."""
    with agent.client() as c:
        c.call("bdev_malloc_create", name="m0", num_blocks=8192, block_size=512)
        c.call("vhost_create_blk_controller", ctrlr="v0", dev_name="m0")
        pid = c.call("framework_get_process")["pid"]
    _connect_once(initiator, os.path.join(agent.vhost_socket_dir, "v0"))
    return pid


def _console_script():
    """This interpreter's spdk-backend-agent script (as the install runs it)."""
    path = os.path.join(os.path.dirname(sys.executable), "spdk-backend-agent")
    if not os.access(path, os.X_OK):
        pytest.skip("no spdk-backend-agent script beside %s" % sys.executable)
    return [path]


@pytest.mark.parametrize("section,debug", [("DEFAULT", True), ("DEFAULT", False),
                                           ("agent", True)],
                         ids=["default-debug", "default-info", "deprecated-agent-debug"])
def test_engine_lines_follow_debug_and_log_file(base_dir, initiator, section, debug):
    log_file = os.path.join(base_dir, "agent-own.log")
    logging_opts = {"debug": str(debug).lower(), "log_file": log_file}
    if section == "DEFAULT":
        agent = agent_proc.AgentProcess(base_dir, defaults=logging_opts)
    else:
        agent = agent_proc.AgentProcess(base_dir, **logging_opts)
    with agent:
        pid = _serve_a_guest(agent, initiator)
    with open(log_file) as f:
        text = f.read()
    engine = [m for m in map(ENGINE_LINE.match, text.splitlines()) if m]
    assert engine, text
    # One format, this process, the engine's own threads and sources.
    assert {m.group(1) for m in engine} == {str(pid)}
    assert any(m.group(6) == "vhost v0: front-end connected" and m.group(2) == "INFO"
               for m in engine), text
    assert any(m.group(4).startswith("reactor.c:") for m in engine), text
    # The vhost-user message trace is the engine's DEBUG level.
    trace = [m for m in engine if m.group(2) == "DEBUG" and "SET_MEM_TABLE" in m.group(6)]
    assert bool(trace) is debug, text
    if not debug:
        assert not any(m.group(2) == "DEBUG" for m in engine), text
    # The agent's own DEBUG lines (every RPC request) with it.
    assert (" DEBUG spdk_backend.agent.server [-] RPC bdev_malloc_create " in text) is debug
    assert re.search(r" %d INFO spdk_backend\.agent \[-\] stopped$" % pid, text, re.M), text
    if section == "agent":
        assert "[agent] log_file is deprecated: set [DEFAULT] log_file instead" in text
        # oslo.config's own warning, before logging is set up: on stderr.
        assert 'Option "log_file" from group "agent" is deprecated for removal' \
            in agent.log(), agent.log()
    else:
        # Everything in the file, nothing on stdout or stderr.
        assert "spdk_backend" not in agent.log() and "deprecated" not in agent.log()
    # One stream: nothing of the engine's own format, on stderr or in the file.
    assert not C_FORMAT.search(agent.log()), agent.log()
    assert not C_FORMAT.search(text), text


def test_log_config_append(base_dir, initiator):
    """A logging config file rules: its handler and format, its levels (the
    engine's logger at DEBUG, the agent's at INFO; ``debug`` is ignored)."""
    log_file = os.path.join(base_dir, "by-config.log")
    config = os.path.join(base_dir, "logging.conf")
    with open(config, "w") as f:
        f.write("[loggers]\nkeys = root, engine\n"
                "[handlers]\nkeys = file\n"
                "[formatters]\nkeys = mine\n"
                "[logger_root]\nlevel = INFO\nhandlers = file\n"
                "[logger_engine]\nqualname = spdk_backend.engine\nlevel = DEBUG\nhandlers =\n"
                "[handler_file]\nclass = FileHandler\nformatter = mine\nargs = (%r,)\n"
                "[formatter_mine]\nformat = MINE %%(process)d %%(levelname)s %%(name)s "
                "%%(message)s\n" % log_file)
    agent = agent_proc.AgentProcess(base_dir, defaults={"log_config_append": config,
                                                        "debug": "true"})
    with agent:
        pid = _serve_a_guest(agent, initiator)
    with open(log_file) as f:
        lines = f.read().splitlines()
    text = "\n".join(lines)
    assert "MINE %d INFO spdk_backend.agent.service spdk-backend-agent" % pid in text, text
    assert any(line.startswith("MINE %d INFO spdk_backend.engine " % pid)
               and "vhost v0: front-end connected" in line for line in lines), text
    assert any(line.startswith("MINE %d DEBUG spdk_backend.engine " % pid)
               and "SET_MEM_TABLE" in line for line in lines), text
    assert not any(" DEBUG spdk_backend.agent" in line for line in lines), text
    assert not C_FORMAT.search(agent.log()), agent.log()


def test_log_dir_names_the_file_after_the_program(base_dir):
    """``log_dir`` without ``log_file``: ``<log_dir>/spdk-backend-agent.log``
    when the installed script runs the agent."""
    log_dir = os.path.join(base_dir, "logs")
    os.mkdir(log_dir)
    agent = agent_proc.AgentProcess(base_dir, defaults={"log_dir": log_dir})
    try:
        agent.start(command=_console_script())
    finally:
        agent.stop()
        agent.kill9()
    assert os.listdir(log_dir) == ["spdk-backend-agent.log"]
    with open(os.path.join(log_dir, "spdk-backend-agent.log")) as f:
        text = f.read()
    assert " INFO spdk_backend.agent.service [-] spdk-backend-agent " in text, text
    assert " INFO spdk_backend.engine [-] " in text, text
    assert "spdk_backend.agent [-] stopped" in text, text


@pytest.mark.skipif(journald.unavailable() is not None, reason=str(journald.unavailable()))
def test_use_journal_reaches_journald(base_dir, initiator):
    """use_journal: oslo.log's journal handler (systemd-python) sends every
    record to a real systemd-journald, the engine's included, with its
    level as PRIORITY and its logger and source as fields; nothing goes to
    stdout or stderr besides."""
    pytest.importorskip("systemd.journal",
                        reason="systemd-python: pip install -e '.[journal]'")
    agent = agent_proc.AgentProcess(base_dir, defaults={"use_journal": "true",
                                                        "debug": "true"})
    with journald.Journald() as jd:
        try:
            agent.start(command=_console_script(), prefix=jd.prefix)
            pid = _serve_a_guest(agent, initiator)
        finally:
            agent.stop()
            agent.kill9()
        entries = jd.wait_for(
            lambda found: any(e.get("MESSAGE", "").endswith("[-] stopped") for e in found),
            _PID=str(pid))
    by_logger = {}
    for e in entries:
        by_logger.setdefault(e.get("LOGGER_NAME"), []).append(e)
    assert any(" ready (pid %d)" % pid in e["MESSAGE"] and e["PRIORITY"] == "6"
               for e in by_logger.get("spdk_backend.agent.service", [])), entries
    assert {e["SYSLOG_IDENTIFIER"] for e in entries} == {"spdk-backend-agent"}
    engine = by_logger.get("spdk_backend.engine", [])
    connected = [e for e in engine if e["MESSAGE"].endswith("vhost v0: front-end connected")]
    assert connected and connected[0]["PRIORITY"] == "6", engine
    assert connected[0]["CODE_FILE"].endswith(".c") and connected[0]["CODE_FUNC"], connected
    assert connected[0]["CODE_LINE"].isdigit() and connected[0]["THREAD_NAME"], connected
    trace = [e for e in engine if "SET_MEM_TABLE" in e["MESSAGE"]]
    assert trace and {e["PRIORITY"] for e in trace} == {"7"}, engine
    assert any(e["MESSAGE"].endswith("[-] stopped")
               for e in by_logger.get("spdk_backend.agent", [])), entries
    # The journal only: nothing on stdout/stderr (the test's log of them).
    assert "spdk_backend" not in agent.log(), agent.log()
