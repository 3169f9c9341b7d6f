"""spdk_backend.connector against a scripted agent."""

import pytest

from spdk_backend import connector
from spdk_backend import exception
from spdk_backend import utils


class Agent:
    """Answers from ``script``: method -> a value, an exception, or a list of
    them (one per call, the last repeated)."""

    def __init__(self, ours=True, **script):
        self.calls = []
        self.script = script
        if "rpc_get_methods" not in script:
            script["rpc_get_methods"] = (["rpc_get_methods", connector.EXTENSIONS_METHOD]
                                         if ours else ["rpc_get_methods"])

    def call(self, method, **params):
        self.calls.append((method, params))
        answer = self.script.get(method, True)
        if isinstance(answer, list) and answer and isinstance(answer[0], BaseException):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def busy():
    return exception.AgentBusy(code=-16, reason="a front-end is connected")


def gone():
    return exception.AgentNotFound(code=-19, reason="no such controller")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(utils, "_sleep", slept.append)
    return slept


@pytest.mark.parametrize("answer,expected", [
    (["rpc_get_methods", "framework_get_process"], True),
    (["rpc_get_methods", "bdev_get_bdevs"], False),          # SPDK
    (True, False),                                           # not a list
    (exception.AgentMethodNotFound(code=-32601, reason="?"), False),
])
def test_has_extensions(answer, expected):
    assert connector.has_extensions(Agent(rpc_get_methods=answer)) is expected


def test_spdk_params_drop_extensions_for_spdk_only():
    params = {"name": "v", "filename": "/f", "shared": True}
    assert connector.spdk_params(Agent(), "bdev_uring_create", params) == params
    assert connector.spdk_params(Agent(ours=False), "bdev_uring_create", params) == \
        {"name": "v", "filename": "/f"}
    # No extension in the params: the agent is not even asked.
    agent = Agent(ours=False)
    assert connector.spdk_params(agent, "bdev_uring_delete", {"name": "v"}) == {"name": "v"}
    assert agent.calls == []


def test_busy_delete_is_retried_with_back_off(no_sleep):
    agent = Agent(vhost_delete_controller=[busy(), busy(), True])
    assert connector.delete_controller(agent, "c0") is True
    assert [m for m, _ in agent.calls] == ["vhost_delete_controller"] * 3
    assert no_sleep == [0.1, 0.2]


def test_gone_is_deleted():
    assert connector.delete_controller(Agent(vhost_delete_controller=gone()), "c0") is False


@pytest.mark.parametrize("ours", [True, False])
def test_force_only_where_the_agent_has_it(ours):
    agent = Agent(ours=ours, vhost_delete_controller=[busy(), busy(), True])
    if ours:
        assert connector.delete_controller(agent, "c0", attempts=2, force=True) is True
        assert agent.calls[-1] == ("vhost_delete_controller", {"ctrlr": "c0", "force": True})
    else:
        with pytest.raises(exception.AgentBusy):
            connector.delete_controller(agent, "c0", attempts=2, force=True)
        assert all("force" not in p for _, p in agent.calls)
    # Without force the busy error stands, whatever the agent.
    agent = Agent(vhost_delete_controller=busy())
    with pytest.raises(exception.Busy):
        connector.delete_controller(agent, "c0", attempts=3)
    assert [m for m, _ in agent.calls] == ["vhost_delete_controller"] * 3


def test_create_or_adopt():
    mine = {"ctrlr": "c0", "socket": "/s/c0", "backend_specific": {"block": {"bdev": "b0"}}}
    agent = Agent(vhost_get_controllers=[mine])
    assert connector.create_or_adopt_controller(agent, "c0", "b0", readonly=True,
                                                max_queues=2) == (mine, True)
    assert agent.calls[1] == ("vhost_create_blk_controller",
                              {"ctrlr": "c0", "dev_name": "b0", "readonly": True,
                               "max_queues": 2})
    exists = exception.AgentAlreadyExists(code=-17, reason="exists")
    agent = Agent(vhost_create_blk_controller=exists, vhost_get_controllers=[mine])
    assert connector.create_or_adopt_controller(agent, "c0", "b0") == (mine, False)
    with pytest.raises(exception.AlreadyExists, match="serves bdev b0, not b1"):
        connector.create_or_adopt_controller(agent, "c0", "b1")
    agent = Agent(vhost_get_controllers=[])
    with pytest.raises(exception.NotFound, match="vanished"):
        connector.create_or_adopt_controller(agent, "c0", "b0")


def test_get_bdev_exact_name_only():
    agent = Agent(bdev_get_bdevs=[{"name": "vol10"}])
    assert connector.get_bdev(agent, "vol1") is None
    assert connector.get_bdev(Agent(bdev_get_bdevs=gone()), "vol1") is None
    invalid = exception.AgentInvalidParams(code=-32602, reason="bad name")
    with pytest.raises(exception.AgentInvalidParams):
        connector.get_bdev(Agent(bdev_get_bdevs=invalid), "a b")
    assert connector.get_bdev(Agent(bdev_get_bdevs=invalid), "a b",
                              invalid_is_missing=True) is None


def test_refuse_in_use():
    ctrlrs = [{"ctrlr": n, "backend_specific": {"block": {"bdev": b}}}
              for n, b in (("c2", "v"), ("c1", "v"), ("c3", "w"))]
    agent = Agent(vhost_get_controllers=ctrlrs)
    assert connector.controllers_of(agent, "v") == ["c1", "c2"]
    with pytest.raises(exception.Busy, match="served by vhost controller\\(s\\) c1, c2"):
        connector.refuse_in_use(agent, "v")
    connector.refuse_in_use(agent, "x")


def test_register_cluster_is_idempotent():
    # Ours says -17; SPDK a bare error, then the cluster is asked for.
    exists = exception.AgentAlreadyExists(code=-17, reason="exists")
    assert connector.register_cluster(Agent(bdev_rbd_register_cluster=exists),
                                      {"name": "c"}) is False
    spdk = Agent(bdev_rbd_register_cluster=exception.AgentError(code=-1, reason="EPERM"),
                 bdev_rbd_get_clusters_info={"cluster_name": "c"})
    assert connector.register_cluster(spdk, {"name": "c"}) is False
    # A registration that failed for real stays an error.
    failed = Agent(bdev_rbd_register_cluster=exception.AgentError(code=-5, reason="EIO"),
                   bdev_rbd_get_clusters_info=exception.AgentNotFound(code=-2, reason="?"))
    with pytest.raises(exception.AgentError, match="EIO"):
        connector.register_cluster(failed, {"name": "c"})
    assert connector.register_cluster(Agent(), {"name": "c"}) is True


def test_rbd_create_that_names_its_files_names_a_cluster():
    params = {"name": "v", "pool_name": "p", "rbd_name": "v", "block_size": 512,
              "user_id": "u", "config_file": "/c", "key_file": "/k"}
    cluster, create = connector.split_rbd_create(params)
    name = connector.rbd_cluster_name(user_id="u", config_file="/c", key_file="/k")
    assert cluster == {"method": "bdev_rbd_register_cluster",
                       "params": {"name": name, "user_id": "u", "config_file": "/c",
                                  "key_file": "/k"}}
    assert create == {"name": "v", "pool_name": "p", "rbd_name": "v", "block_size": 512,
                      "cluster_name": name}
    # The same settings, the same name; others, another.
    assert name == connector.rbd_cluster_name("u", "/c", "/k")
    assert name != connector.rbd_cluster_name("u", "/c", "/other")
    named = dict(create)
    assert connector.split_rbd_create(named) == (None, named)
