"""Fixtures of the tests that record every request a client sends to an
agent and check it against SPDK's parameter rules (tests/support/spdk_rules.py):
tests/unit/test_spdk_requests.py and its Nova and Cinder siblings import them.

- ``agent``: an in-process agent over the fake volume engine, in a short
  temp dir (unix socket paths are limited to 107 bytes);
- ``target``: a :class:`spdk_rules.RequestRecorder`, once for the agent as
  it is ("agent": our extensions allowed) and once posing as SPDK ("spdk").
"""

import os
import shutil
import tempfile

import pytest

from tests.support import fake_engine
from tests.support import spdk_rules


@pytest.fixture
def short_tmp():
    path = tempfile.mkdtemp(prefix="sbq-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(short_tmp):
    engine = fake_engine.VolumeFakeEngine(
        vhost_socket_dir=os.path.join(short_tmp, "vhost"))
    with fake_engine.InProcessAgent(short_tmp, engine=engine) as running:
        yield running


@pytest.fixture(params=["agent", "spdk"])
def target(request, monkeypatch):
    """"agent": the agent as it is; "spdk": it poses as SPDK."""
    recorder = spdk_rules.RequestRecorder(monkeypatch,
                                          spdk_target=request.param == "spdk")
    recorder.extensions = request.param == "agent"
    return recorder
