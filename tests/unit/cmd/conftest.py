import shutil
import tempfile

import pytest

from tests.support import fake_engine


@pytest.fixture
def short_tmp():
    """A short temp dir (unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="sba-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(short_tmp):
    with fake_engine.InProcessAgent(short_tmp) as running:
        yield running
