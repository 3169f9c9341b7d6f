"""A running agent for the OpenStack driver tests, over tests/support/agent_proc.

Its files live in a short directory under /tmp (pytest's tmp_path can be
longer than a unix socket path allows) that is removed at the end.
"""

import contextlib
import shutil
import tempfile

from tests.support.agent_proc import AgentProcess


@contextlib.contextmanager
def running_agent():
    """Yield a started AgentProcess (``.rpc_socket``, ``.client()``)."""
    workdir = tempfile.mkdtemp(prefix="sb-os-", dir="/tmp")
    try:
        with AgentProcess(workdir) as agent:
            yield agent
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
