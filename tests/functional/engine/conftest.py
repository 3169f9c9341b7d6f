"""Fixtures of the engine's functional tests."""

import pytest

from spdk_backend._native import lib

#: How long every control call waits under the ``hooks`` fixture.
CALL_WAIT_US = 150_000


@pytest.fixture
def hooks(monkeypatch):
    """The engine's test hooks allowed (``SB_TEST_HOOKS``), and every control
    call's wait capped at CALL_WAIT_US, so a call queued behind a stalled
    reactor (``sb_test_stall_reactor``) gives up."""
    monkeypatch.setenv("SB_TEST_HOOKS", "1")
    assert lib.sb_test_set_call_timeout(CALL_WAIT_US) == 0
    yield
    lib.sb_test_set_call_timeout(0)
