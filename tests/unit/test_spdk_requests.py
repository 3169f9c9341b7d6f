"""Every request the CLI and the volume backends send keeps SPDK's
parameter rules (tests/support/spdk_rules.py, written from SPDK's sources).

Each scenario runs twice against the real agent service (over the fake
engine): as it is, where our documented extensions may go along, and
posing as SPDK (its ``rpc_get_methods`` without our methods), where
nothing but SPDK's methods and parameters may.  The Nova and Cinder
drivers are checked the same way in tests/unit/nova and tests/unit/cinder.
"""

import os

import pytest

from spdk_backend import connector
from spdk_backend import exception
from spdk_backend.agent import client as agent_client
from spdk_backend.agent import methods as agent_methods  # noqa: F401
from spdk_backend.agent import rpc as agent_rpc
from spdk_backend.cmd import _common
from spdk_backend.cmd import attach as attach_cmd
from spdk_backend.cmd import cli
from spdk_backend.cmd import migrate
from spdk_backend.virt.libvirt import policy
from spdk_backend.volume import manager
from spdk_backend.volume.backends import rbd as rbd_backend
from tests.support import fake_ceph
from tests.support import spdk_rules
from tests.support.spdk_requests import agent, short_tmp, target  # noqa: F401 (fixtures)

MiB = 1 << 20


# -- the rules themselves ------------------------------------------------------------


def test_every_agent_method_is_spdks_or_listed_as_ours():
    served = set(agent_rpc.REGISTRY)
    assert served - set(spdk_rules.SPDK_METHODS) == spdk_rules.OURS
    assert set(spdk_rules.SPDK_METHODS) <= served
    assert set(connector.OUR_METHODS) == spdk_rules.OURS
    assert connector.EXTENSIONS_METHOD in spdk_rules.OURS


def test_the_agent_takes_every_spdk_parameter_and_lists_its_own():
    for name, meth in agent_rpc.REGISTRY.items():
        rule = spdk_rules.SPDK_METHODS.get(name)
        if rule is None:
            continue
        ours = {p.name for p in meth.params}
        spdks = set(rule.required) | set(rule.optional)
        assert spdks <= ours, name
        assert ours - spdks == (spdk_rules.EXTENSIONS.get(name, set())
                                | spdk_rules.ACCEPTED_ONLY.get(name, set())), name
        # What SPDK requires the agent requires, or defaults (SPDK's
        # bdev_rbd_create has no default block size; the agent's is 512).
        required = {p.name for p in meth.params if p.required}
        assert required <= set(rule.required), name
    assert {m: set(p) for m, p in connector.EXTENSION_PARAMS.items()} == \
        spdk_rules.EXTENSIONS


@pytest.mark.parametrize("method,params,problem", [
    ("vhost_delete_controller", {"ctrlr": "c", "force": True},
     "refuses the unknown parameter force"),
    ("vhost_create_blk_controller", {"ctrlr": "c", "dev_name": "b", "max_queues": 2},
     "ignores max_queues"),
    ("bdev_rbd_create", {"name": "v", "pool_name": "p", "rbd_name": "v",
                         "block_size": 512, "config_file": "/c"},
     "unknown parameter config_file"),
    ("bdev_rbd_create", {"pool_name": "p", "rbd_name": "v"}, "missing required block_size"),
    ("bdev_uring_create", {"name": "v", "filename": "/f", "block_size": "512"},
     "block_size: '512' is not uint32"),
    ("bdev_rbd_register_cluster", {"name": "c", "config_param": {"a": 1}},
     "config_param"),
    ("vhost_create_blk_controller", {"ctrlr": "c", "dev_name": "b", "readonly": 1},
     "readonly: 1 is not boolean"),
    ("spdk_get_version", {}, "takes no params"),
    ("vhost_delete_controller", None, "needs a params object"),
    ("bdev_rbd_rescan", {"name": "v"}, "SPDK has no method bdev_rbd_rescan"),
])
def test_the_rules_find_what_spdk_refuses(method, params, problem):
    found = spdk_rules.problems(method, params)
    assert any(problem in p for p in found), found


def test_the_rules_take_what_spdk_takes():
    for method, params in (
            ("bdev_get_bdevs", None), ("bdev_get_bdevs", {"name": "v"}),
            ("vhost_get_controllers", None), ("spdk_get_version", None),
            ("bdev_rbd_create", {"name": "v", "pool_name": "p", "rbd_name": "v",
                                 "block_size": 512, "cluster_name": "c"}),
            ("bdev_rbd_register_cluster", {"name": "c", "user_id": "u",
                                           "config_param": {"a": "1"},
                                           "config_file": "/c", "key_file": "/k"}),
            ("vhost_create_blk_controller", {"ctrlr": "c", "dev_name": "b",
                                             "readonly": True})):
        assert spdk_rules.problems(method, params) == [], (method, params)


# -- a recorded agent -------------------------------------------------------------------





def _client(agent):
    return agent_client.AgentClient(agent.opts.rpc_socket, timeout=10, connect_timeout=5)


def _cli(capsys, agent, *argv):
    rc = cli.main(["--rpc-socket", agent.opts.rpc_socket] + list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


class FakeHost:
    """A libvirt host whose domain vm1 takes any disk (libvirt's own calls
    are tests/unit/virt's business; the agent calls are this test's)."""

    def __init__(self):
        self.disks = []

    def get_guest(self, name):
        if name != "vm1":
            raise exception.DomainNotFound(name=name)
        return self

    def is_active(self):
        return False

    def versions(self):
        return None

    def close(self):
        pass


@pytest.fixture
def host(monkeypatch):
    host = FakeHost()

    def attach(h, name, socket_path, **kwargs):
        if socket_path.endswith("refused"):
            raise exception.LibvirtError(reason="libvirt refused the disk")
        h.disks.append(policy.DiskInfo("vdb", "ua-x", socket_path, 1, True, True))
        return h.disks[-1]

    def detach(h, name, socket_path=None, **kwargs):
        h.disks = [d for d in h.disks if d.socket_path != socket_path]
        return policy.DiskInfo("vdb", "ua-x", socket_path, 1, True, True)

    monkeypatch.setattr(policy, "attach_vhost_disk", attach)
    monkeypatch.setattr(policy, "detach_vhost_disk", detach)
    monkeypatch.setattr(policy, "list_vhost_disks", lambda h, name: list(h.disks))
    monkeypatch.setattr(policy, "hotplug_reconnects", lambda versions: True)
    monkeypatch.setattr(_common, "open_host", lambda args: host)
    return host


def _assert_spdk_rules(target):
    assert target.requests
    assert spdk_rules.check_requests(target.requests, target.extensions) == []


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_volume_commands(capsys, agent, target, short_tmp, monkeypatch):
    monkeypatch.setenv("SPDK_BACKEND_LIBVIRT_URI", "test:///default")
    voldir = os.path.join(short_tmp, "volumes")
    _cli(capsys, agent, "volume", "create", "v1", "--size", "1M", "--volume-dir", voldir)
    _cli(capsys, agent, "volume", "create", "v2", "--size", "1M", "--volume-dir", voldir,
         "--shared")
    _cli(capsys, agent, "volume", "create", "m1", "--size", "1M", "--backend", "malloc")
    _cli(capsys, agent, "volume", "list")
    _cli(capsys, agent, "volume", "resize", "v1", "--size", "2M")
    _cli(capsys, agent, "status", "--interval", "0")
    for name in ("v1", "v2", "m1"):
        _cli(capsys, agent, "volume", "delete", name)
    _assert_spdk_rules(target)
    # ``shared`` went to the agent only, and then it took it.
    shared = [p for p in target.sent("bdev_uring_create") if p.get("shared")]
    assert len(shared) == (1 if target.extensions else 0)


def test_cli_attach_detach_and_rollback(agent, target, host, monkeypatch):
    with _client(agent) as client:
        client.call("bdev_malloc_create", name="vol1", num_blocks=2048, block_size=512)
        client.call("bdev_malloc_create", name="vol2", num_blocks=2048, block_size=512)
        del target.requests[:]
        out = attach_cmd.attach(client, host, "vm1", "vol1", queues=2, readonly=True)
        assert out["created_ctrlr"] is True
        # Again: the controller is adopted, not made twice.
        assert attach_cmd.attach(client, host, "vm1", "vol1")["created_ctrlr"] is False
        attach_cmd.detach(client, host, "vm1", "vol1")
        # libvirt refuses the disk while QEMU holds the socket: the
        # rollback forces the delete where the agent can.
        name = _common.ctrlr_name("vm1", "vol2")
        original = policy.attach_vhost_disk

        def refuse(h, dom, socket_path, **kwargs):
            agent.engine.busy_ctrlrs.add(name)      # QEMU got as far as connecting
            return original(h, dom, socket_path + ".refused", **kwargs)

        monkeypatch.setattr(policy, "attach_vhost_disk", refuse)
        with pytest.raises(exception.SpdkBackendException):
            attach_cmd.attach(client, host, "vm1", "vol2")
    _assert_spdk_rules(target)
    forced = [p for p in target.sent("vhost_delete_controller") if p.get("force")]
    queues = [p for p in target.sent("vhost_create_blk_controller") if "max_queues" in p]
    if target.extensions:
        assert forced == [{"ctrlr": name, "force": True}] and queues
        assert name not in agent.engine.ctrlrs
    else:
        # SPDK has no force: the busy controller stays, and the error says so.
        assert forced == [] and queues == []
        assert name in agent.engine.ctrlrs


def test_cli_migration_commands(agent, target, host, short_tmp):
    path = os.path.join(short_tmp, "shared-vol")
    with open(path, "wb") as f:
        f.truncate(MiB)
    with _client(agent) as client:
        out = migrate.prepare_incoming(client, "vm2", "mig1", path=path, queues=2)
        assert out["created_bdev"] and out["shared"] is target.extensions
        migrate.detach_after_migration(client, host, "vm2", "mig1", wait=1)
        assert "mig1" not in agent.engine.bdevs
    _assert_spdk_rules(target)


# -- the volume backends -----------------------------------------------------------------------


def test_file_and_malloc_backends(agent, target, short_tmp):
    voldir = os.path.join(short_tmp, "volumes")
    os.makedirs(voldir)
    with _client(agent) as client:
        for name, kwargs in (("file", {"volume_dir": voldir, "shared": True}),
                             ("malloc", {})):
            backend = manager.load_backend(name, client, **kwargs)
            backend.check()
            backend.create("vol-" + name, MiB)
            backend.export("vol-" + name)
            backend.export("vol-" + name)           # idempotent
            if name == "file":
                backend.extend("vol-file", 2 * MiB)
                backend.create_snapshot("vol-file", "snap-file")
                backend.create_from_snapshot("snap-file", "from-snap", 2 * MiB)
                backend.clone("vol-file", "clone-file", 2 * MiB)
            backend.capacity()
            backend.provisioned_bytes()
            backend.controllers_of("vol-" + name)
            backend.unexport("vol-" + name)
            backend.delete("vol-" + name)
    _assert_spdk_rules(target)


@pytest.fixture
def ceph(monkeypatch):
    monkeypatch.setattr(rbd_backend, "import_ceph", fake_ceph.modules)


@pytest.mark.parametrize("cluster_name", [None, "ceph-1"])
def test_rbd_backend_registers_its_cluster(agent, target, ceph, cluster_name):
    with _client(agent) as client:
        backend = manager.load_backend("rbd", client, pool="volumes", user_id="cinder",
                                       ceph_conf="/etc/ceph/ceph.conf",
                                       keyring="/etc/ceph/cinder.keyring",
                                       cluster_name=cluster_name)
        for name in ("volume-1", "volume-2"):
            backend.create(name, 4 * MiB)
            backend.export(name)
        backend.extend("volume-1", 8 * MiB)
        handed_out = [backend.bdev_spec("volume-1")] + backend.bdev_prerequisites("volume-1")
        backend.delete("volume-1")
        backend.delete("volume-2")
    _assert_spdk_rules(target)
    # The calls handed to compute hosts are SPDK's too.
    assert spdk_rules.check_requests([(c["method"], c["params"]) for c in handed_out],
                                     extensions=False) == []
    # One registration per agent, then only bdevs that name it.
    cluster = cluster_name or connector.rbd_cluster_name(
        user_id="cinder", config_file="/etc/ceph/ceph.conf",
        key_file="/etc/ceph/cinder.keyring")
    assert list(agent.engine.clusters) == [cluster]
    assert agent.engine.clusters[cluster]["key_file"] == "/etc/ceph/cinder.keyring"
    assert [p["cluster_name"] for p in target.sent("bdev_rbd_create")] == [cluster] * 2
    assert target.methods().count("bdev_rbd_rescan") == (1 if target.extensions else 0)
