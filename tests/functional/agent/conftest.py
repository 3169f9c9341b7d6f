import shutil
import tempfile

import pytest

from tests.support import agent_proc


@pytest.fixture
def base_dir():
    """A short temp dir (unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="sbf-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(base_dir):
    with agent_proc.AgentProcess(base_dir) as proc:
        yield proc


@pytest.fixture
def client(agent):
    with agent.client() as c:
        yield c

