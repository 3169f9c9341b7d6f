"""Fixtures of the functional tests that run a real agent process."""

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
    """A real agent process (real engine) in ``base_dir``."""
    with agent_proc.AgentProcess(base_dir) as proc:
        yield proc
