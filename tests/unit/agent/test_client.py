import os
import threading
import time
from unittest import mock

import pytest

from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from tests.support import fake_engine


def test_typed_errors(agent):
    with agent_client.AgentClient(agent.opts.rpc_socket) as c:
        with pytest.raises(exception.AgentMethodNotFound):
            c.call("nope")
        with pytest.raises(exception.AgentInvalidParams) as err:
            c.call("bdev_malloc_create", name="x")
        assert "num_blocks" in str(err.value)
        with pytest.raises(exception.AgentNotFound):
            c.call("bdev_malloc_delete", name="x")
        c.call("bdev_malloc_create", name="x", num_blocks=8, block_size=512)
        with pytest.raises(exception.AgentAlreadyExists):
            c.call("bdev_malloc_create", name="x", num_blocks=8, block_size=512)
        with pytest.raises(exception.AgentInvalidArgument):
            c.call("bdev_malloc_create", name="y", num_blocks=8, block_size=3)
        assert c.call("bdev_malloc_delete", _params={"name": "x"}) is True


def test_waits_for_a_starting_agent(short_tmp):
    server = fake_engine.InProcessAgent(short_tmp)
    timer = threading.Timer(0.5, server.start)
    timer.start()
    try:
        c = agent_client.AgentClient(server.opts.rpc_socket, connect_timeout=10)
        assert c.call("framework_wait_init") is True
        c.close()
    finally:
        timer.join()
        server.stop()


def test_reconnects_after_agent_restart(short_tmp):
    with fake_engine.InProcessAgent(short_tmp) as a:
        c = agent_client.AgentClient(a.opts.rpc_socket, connect_timeout=10)
        assert c.call("framework_wait_init") is True
    with fake_engine.InProcessAgent(short_tmp):
        assert c.call("framework_wait_init") is True
    c.close()


def test_gives_up_with_agent_unavailable(short_tmp):
    sleeps = []
    with mock.patch("spdk_backend.utils._sleep", side_effect=sleeps.append):
        c = agent_client.AgentClient(os.path.join(short_tmp, "none.sock"),
                                     connect_timeout=0.5)
        start = time.monotonic()
        with pytest.raises(exception.AgentUnavailable) as err:
            c.call("spdk_get_version")
    assert "none.sock" in str(err.value)
    assert sleeps and time.monotonic() - start < 5
