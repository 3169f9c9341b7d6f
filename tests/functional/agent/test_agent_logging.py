"""The engine's log obeys the agent's configuration (engine_log.py).

A real agent with the real engine: its ``debug`` and ``log_file`` options
govern the engine's lines too.  They arrive in the agent's one format
(``<local time to the microsecond> <pid> <LEVEL> spdk_backend.engine:
<engine thread> <file:line> <function>: <message>``), in its one stream
(the log file when set, nothing left on stderr in the engine's own
format), at its one level (``debug = true`` shows the vhost-user message
trace; otherwise no DEBUG line).
"""

import os
import re
import subprocess

import pytest

from tests.support import agent_proc

pytestmark = pytest.mark.timeout(120)

ENGINE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} (\d+) (DEBUG|INFO|WARNING|ERROR) "
    r"spdk_backend\.engine: (\S+) ([\w.]+\.c:\d+) (\w+): (.*)$")
C_FORMAT = re.compile(r"^\[\d{4}-\d\d-\d\d ", re.M)


def _connect_once(initiator, sock):
    res = subprocess.run([str(initiator), "--socket", sock, "--rw", "randrw", "--qd", "4",
                          "--time", "0.5", "--size-limit", "4M", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("debug", [True, False])
def test_engine_lines_follow_debug_and_log_file(base_dir, initiator, debug):
    log_file = os.path.join(base_dir, "agent-own.log")
    agent = agent_proc.AgentProcess(base_dir, debug=str(debug).lower(), log_file=log_file)
    with agent:
        with agent.client() as c:
            c.call("bdev_malloc_create", name="m0", num_blocks=8192, block_size=512)
            c.call("vhost_create_blk_controller", ctrlr="v0", dev_name="m0")
            pid = c.call("framework_get_process")["pid"]
        _connect_once(initiator, os.path.join(agent.vhost_socket_dir, "v0"))
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
    # One stream: nothing of the engine's own format, on stderr or in the file.
    assert not C_FORMAT.search(agent.log()), agent.log()
    assert not C_FORMAT.search(text), text
