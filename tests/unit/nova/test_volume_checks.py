"""What LibvirtVhostUserBlkVolumeDriver refuses before it talks to the agent.

Shared guest memory (Nova's rule: memAccess='shared' for instances on pages
larger than the host's smallest page, or <access mode='shared'/> with
[libvirt] file_backed_memory), and the agent methods a connection info may
name (BDEV_CALLS, PREREQUISITE_CALLS).  No agent here: a recording client
stands in for it, so "refused before any RPC" means the driver never asked
for a client.  The same refusals against a real agent: test_volume.py.
"""

import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

import nova.conf  # noqa: E402
from nova import context  # noqa: E402
from nova import exception as nova_exception  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.unit import fake_instance  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from spdk_backend import connector  # noqa: E402
from spdk_backend import exception  # noqa: E402
from spdk_backend.agent import methods as agent_methods  # noqa: E402,F401
from spdk_backend.agent import rpc as agent_rpc  # noqa: E402
from spdk_backend.nova import volume  # noqa: E402
from spdk_backend.volume.backends import file as file_backend  # noqa: E402
from spdk_backend.volume.backends import rbd as rbd_backend  # noqa: E402

objects.register_all()


@pytest.fixture
def conf():
    fixture = config_fixture.Config(nova.conf.CONF)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


@pytest.fixture(autouse=True)
def small_pages(monkeypatch):
    # The host's smallest page: 4 KiB (x86), whatever runs the tests.
    monkeypatch.setattr(volume, "_small_page_kib", lambda: 4)


def _instance(page_size=None, image_page_size=None, placed=None):
    specs = {"hw:mem_page_size": page_size} if page_size else {}
    flavor = objects.Flavor(name="m1.test", memory_mb=256, vcpus=1, root_gb=0,
                            ephemeral_gb=0, swap=0, extra_specs=specs)
    inst = fake_instance.fake_instance_obj(context.get_admin_context(), flavor=flavor)
    # Nova keeps the image's properties in the system metadata.
    inst.system_metadata = ({"image_hw_mem_page_size": image_page_size}
                            if image_page_size else {})
    if placed is not None:
        # What the compute host's claim put in the instance: the page size
        # its NUMA cell got.
        inst.numa_topology = objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(id=0, cpuset={0}, pcpuset=set(), memory=256,
                                     pagesize=placed)])
    return inst


# -- shared memory ---------------------------------------------------------------


@pytest.mark.parametrize("page_size,image_page_size,placed,shared", [
    (None, None, None, False),          # no page size: private memory
    ("small", None, None, False),       # Nova: the smallest page, private
    ("large", None, None, True),
    ("2048", None, None, True),         # KiB
    ("2MB", None, None, True),
    ("1GB", None, None, True),
    ("4", None, None, False),           # the host's small page, by its size
    ("4KB", None, None, False),
    ("any", None, 2048, True),          # placed on huge pages
    ("any", None, 1048576, True),
    ("any", None, 4, False),            # no huge page had room: small pages
    ("any", None, None, True),          # placement unknown: Nova prefers huge pages
    # The image's property counts under a flavor that says large or any.
    ("large", "small", None, False),
    ("any", "small", None, False),
    ("large", "2048", None, True),
    ("any", "1GB", None, True),
    ("large", "4KB", None, False),
    ("small", "large", None, False),    # Nova refuses to boot this one
    (None, "2048", None, False),        # and this one (image without flavor)
    ("huge", None, None, False),        # not a page size
])
def test_shared_memory_follows_nova(conf, page_size, image_page_size, placed, shared):
    inst = _instance(page_size, image_page_size, placed)
    assert volume.has_shared_memory(inst) is shared
    refusal = volume.shared_memory_refusal(inst)
    assert (refusal is None) is shared
    if page_size:
        assert shared or "hw:mem_page_size=%s" % page_size in refusal
    if image_page_size and page_size in ("large", "any"):
        assert shared or "hw_mem_page_size=%s" % image_page_size in refusal


@pytest.mark.parametrize("page_size", [None, "small", "4KB", "any"])
def test_file_backed_memory_is_shared(conf, page_size):
    # Nova backs every guest with shared files (<access mode='shared'/>).
    conf.config(group="libvirt", file_backed_memory=1024)
    assert volume.shared_memory_refusal(_instance(page_size, placed=4)) is None


def test_file_backed_memory_zero_is_not(conf):
    conf.config(group="libvirt", file_backed_memory=0)
    assert volume.shared_memory_refusal(_instance()) is not None


# -- a recording agent ---------------------------------------------------------


class FakeClient:
    """An agent whose bdevs and controllers are dicts."""

    def __init__(self, bdevs=()):
        self.calls = []
        self.bdevs = {b: {"name": b, "num_blocks": 8, "block_size": 512} for b in bdevs}
        self.ctrlrs = {}
        self.clusters = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def call(self, method, **params):
        self.calls.append((method, params))
        if method == "bdev_rbd_register_cluster":
            if params["name"] in self.clusters:
                # SPDK's answer to a name it has: no errno.
                raise exception.AgentError(code=-1, reason="Operation not permitted")
            self.clusters.add(params["name"])
            return params["name"]
        if method == "bdev_rbd_get_clusters_info":
            if params["name"] not in self.clusters:
                raise exception.AgentNotFound(code=-2, reason="no cluster")
            return {"cluster_name": params["name"]}
        if method == "rpc_get_methods":
            return list(agent_rpc.REGISTRY)
        if method == "bdev_get_bdevs":
            if params["name"] not in self.bdevs:
                raise exception.AgentNotFound(code=-19, reason="no bdev")
            return [self.bdevs[params["name"]]]
        if method.endswith("_create") and method.startswith("bdev_"):
            self.bdevs[params["name"]] = {"name": params["name"], "num_blocks": 8,
                                          "block_size": 512}
        elif method.endswith("_delete") and method.startswith("bdev_"):
            self.bdevs.pop(params["name"], None)
        elif method == "vhost_create_blk_controller":
            self.ctrlrs[params["ctrlr"]] = {
                "ctrlr": params["ctrlr"], "socket": "/run/sock/" + params["ctrlr"],
                "backend_specific": {"block": {"bdev": params["dev_name"]}}}
        elif method == "vhost_get_controllers":
            return [c for c in self.ctrlrs.values() if c["ctrlr"] == params.get("name")]
        elif method == "vhost_delete_controller":
            self.ctrlrs.pop(params["ctrlr"], None)
        return True


@pytest.fixture
def agent():
    return FakeClient()


@pytest.fixture
def drv(conf, agent, monkeypatch):
    drv = volume.LibvirtVhostUserBlkVolumeDriver(host=None)
    drv.clients = 0

    def client():
        drv.clients += 1
        return agent

    monkeypatch.setattr(drv, "_client", client)
    return drv


def _info(backend="file", **data):
    vol_id = str(uuid.uuid4())
    name = "volume-%s" % vol_id
    if backend == "file":
        spec = {"method": "bdev_uring_create",
                "params": {"name": name, "filename": "/v/" + name, "block_size": 512}}
        requires = []
    else:
        # What the Cinder driver hands out: SPDK's bdev_rbd_create, naming
        # a cluster the compute host registers first.
        spec = {"method": "bdev_rbd_create",
                "params": {"name": name, "pool_name": "volumes", "rbd_name": name,
                           "block_size": 512, "cluster_name": "ceph-1"}}
        requires = [{"method": "bdev_rbd_register_cluster",
                     "params": {"name": "ceph-1", "user_id": "cinder",
                                "config_file": "/cinder/ceph.conf",
                                "key_file": "/cinder/keyring"}}]
    info = {"volume_id": vol_id, "name": name, "bdev_name": name, "bdev": spec,
            "bdev_requires": requires, "block_size": 512, "num_queues": 1,
            "access_mode": "rw", "backend": backend}
    info.update(data)
    return {"driver_volume_type": "vhost_user_blk", "data": info, "serial": vol_id}


# -- shared memory refused before the agent ------------------------------------------


@pytest.mark.parametrize("page_size,image_page_size,placed,why", [
    (None, None, None, "its flavor has no hw:mem_page_size"),
    ("small", None, None, "hw:mem_page_size=small: Nova keeps small pages private"),
    ("4KB", None, None, "hw:mem_page_size=4KB: 4 KiB is the host's small page size"),
    ("any", None, 4, "hw:mem_page_size=any, placed on 4 KiB pages"),
    ("large", "small", None,
     "hw:mem_page_size=large with image property hw_mem_page_size=small"),
])
def test_attach_without_shared_memory_is_refused_before_the_agent(
        drv, agent, page_size, image_page_size, placed, why):
    inst = _instance(page_size, image_page_size, placed)
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(_info(), inst)
    assert "instance %s has no shared guest memory" % inst.uuid in str(err.value)
    assert why in str(err.value)
    assert "hw:mem_page_size=large" in str(err.value)   # the way out
    assert drv.clients == 0 and agent.calls == []


@pytest.mark.parametrize("page_size,image_page_size,placed", [
    ("large", None, None), ("2048", None, None), ("1GB", None, None),
    ("any", None, 2048), ("any", "2MB", None)])
def test_attach_with_shared_memory_goes_on(drv, agent, page_size, image_page_size,
                                           placed):
    info = _info()
    drv.connect_volume(info, _instance(page_size, image_page_size, placed))
    assert info["data"]["vhost_socket"].startswith("/run/sock/vhu-")


# -- agent methods from the connection info ----------------------------------------

HOSTILE = ["vhost_delete_controller", "bdev_malloc_create; rm -rf /",
           "bdev_uring_delete", "bdev_malloc_create", "bdev_rbd_unregister_cluster",
           "BDEV_URING_CREATE", " bdev_uring_create", "", 42, None,
           ["bdev_uring_create"], {"bdev_uring_create": 1}]


@pytest.mark.parametrize("method", HOSTILE, ids=repr)
def test_connect_refuses_an_unknown_bdev_method(drv, agent, method):
    info = _info()
    info["data"]["bdev"]["method"] = method
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(info, _instance("large"))
    assert "names agent method %.80r" % (method,) in str(err.value)
    assert "it runs bdev_rbd_create, bdev_uring_create" in str(err.value)
    assert drv.clients == 0 and agent.calls == []


@pytest.mark.parametrize("method", HOSTILE + ["bdev_uring_create", "bdev_rbd_create"],
                         ids=repr)
def test_connect_refuses_an_unknown_prerequisite_method(drv, agent, method):
    info = _info("rbd")
    info["data"]["bdev_requires"].append({"method": method, "params": {"name": "x"}})
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(info, _instance("large"))
    assert "a call of the connection's bdev_requires names agent method" in str(err.value)
    assert "it runs bdev_rbd_register_cluster" in str(err.value)
    assert drv.clients == 0 and agent.calls == []


@pytest.mark.parametrize("call", [
    "bdev_uring_create", ["bdev_uring_create", {}], 7,
    {"method": "bdev_uring_create"},
    {"method": "bdev_uring_create", "params": ["volume-x"]},
    {"method": "bdev_uring_create", "params": {1: "x", "name": "volume-x"}},
    {"method": "bdev_uring_create", "params": {"filename": "/v/x"}},
    {"method": "bdev_uring_create", "params": {"name": ["volume-x"]}},
], ids=repr)
def test_connect_refuses_a_malformed_bdev_call(drv, agent, call):
    info = _info()
    info["data"]["bdev"] = call
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(info, _instance("large"))
    assert "the connection's bdev call" in str(err.value)
    assert drv.clients == 0 and agent.calls == []


def test_connect_refuses_bdev_requires_that_is_not_a_list(drv, agent):
    info = _info("rbd", bdev_requires="bdev_rbd_register_cluster")
    with pytest.raises(nova_exception.VolumeAttachFailed) as err:
        drv.connect_volume(info, _instance("large"))
    assert "bdev_requires is not a list" in str(err.value)
    assert drv.clients == 0 and agent.calls == []


@pytest.mark.parametrize("method", HOSTILE, ids=repr)
def test_disconnect_refuses_an_unknown_bdev_method(drv, agent, method):
    info = _info(bdev_created=True, vhost_ctrlr="vhu-x")
    info["data"]["bdev"]["method"] = method
    with pytest.raises(nova_exception.InvalidVolume) as err:
        drv.disconnect_volume(info, _instance("large"))
    assert "names agent method %.80r" % (method,) in str(err.value)
    assert drv.clients == 0 and agent.calls == []


@pytest.mark.parametrize("method", HOSTILE, ids=repr)
def test_extend_refuses_an_unknown_bdev_method(drv, agent, method):
    info = _info()
    info["data"]["bdev"]["method"] = method
    with pytest.raises(nova_exception.VolumeExtendFailed) as err:
        drv.extend_volume(info, _instance("large"), 1 << 20)
    assert "names agent method %.80r" % (method,) in str(err.value)
    assert drv.clients == 0 and agent.calls == []


@pytest.mark.parametrize("backend,create,delete,rescan", [
    ("file", "bdev_uring_create", "bdev_uring_delete", "bdev_uring_rescan"),
    ("rbd", "bdev_rbd_create", "bdev_rbd_delete", "bdev_rbd_rescan"),
])
def test_delete_and_rescan_come_from_the_table(drv, agent, backend, create, delete,
                                               rescan):
    inst = _instance("large")
    info = _info(backend)
    data = info["data"]
    drv.connect_volume(info, inst)
    assert data["bdev_created"] is True
    assert [m for m, _ in agent.calls if m.startswith("bdev_") and m != "bdev_get_bdevs"] \
        == ([] if backend == "file" else ["bdev_rbd_register_cluster"]) + [create]
    del agent.calls[:]
    assert drv.extend_volume(info, inst, 4096) == 8 * 512
    assert [c for c in agent.calls if c[0] != "rpc_get_methods"][0] == \
        (rescan, {"name": data["bdev_name"]})
    del agent.calls[:]
    drv.disconnect_volume(info, inst)
    assert agent.calls[-1] == (delete, {"name": data["bdev_name"]})


def test_rbd_calls_take_this_hosts_ceph_files(drv, agent, conf):
    conf.config(group="spdk_vhost", rbd_ceph_conf="/etc/ceph/ceph.conf",
                rbd_keyring="/etc/ceph/nova.keyring")
    info = _info("rbd")
    drv.connect_volume(info, _instance("large"))
    made = {m: p for m, p in agent.calls}
    # The cluster gets this host's files; the bdev names the cluster only.
    assert made["bdev_rbd_register_cluster"] == {
        "name": "ceph-1", "user_id": "cinder", "config_file": "/etc/ceph/ceph.conf",
        "key_file": "/etc/ceph/nova.keyring"}
    assert made["bdev_rbd_create"]["cluster_name"] == "ceph-1"
    assert not {"config_file", "key_file", "user_id"} & set(made["bdev_rbd_create"])
    # The connection info itself is left as Cinder wrote it.
    assert info["data"]["bdev_requires"][0]["params"]["config_file"] == "/cinder/ceph.conf"


def test_an_earlier_rbd_connection_info_becomes_a_registered_cluster(drv, agent, conf):
    # Connection infos made before the Cinder driver registered clusters
    # name the Ceph files in bdev_rbd_create, which SPDK's does not take.
    conf.config(group="spdk_vhost", rbd_keyring="/etc/ceph/nova.keyring")
    info = _info("rbd", bdev_requires=[])
    params = info["data"]["bdev"]["params"]
    del params["cluster_name"]
    params.update(user_id="cinder", config_file="/cinder/ceph.conf",
                  key_file="/cinder/keyring")
    drv.connect_volume(info, _instance("large"))
    made = [(m, p) for m, p in agent.calls if m.startswith("bdev_rbd_")]
    cluster = connector.rbd_cluster_name(user_id="cinder", config_file="/cinder/ceph.conf",
                                         key_file="/etc/ceph/nova.keyring")
    assert made == [
        ("bdev_rbd_register_cluster", {"name": cluster, "user_id": "cinder",
                                       "config_file": "/cinder/ceph.conf",
                                       "key_file": "/etc/ceph/nova.keyring"}),
        ("bdev_rbd_create", {"name": info["data"]["bdev_name"], "pool_name": "volumes",
                             "rbd_name": info["data"]["bdev_name"], "block_size": 512,
                             "cluster_name": cluster})]
    # Connected twice (another volume of the same cluster): registered once.
    agent.calls.clear()
    agent.clusters = {cluster}
    second = _info("rbd", bdev_requires=[])
    second["data"]["bdev"]["params"] = dict(
        params, name=second["data"]["bdev_name"], rbd_name=second["data"]["bdev_name"])
    drv.connect_volume(second, _instance("large"))
    assert [m for m, _ in agent.calls if m.startswith("bdev_rbd_")] == \
        ["bdev_rbd_register_cluster", "bdev_rbd_get_clusters_info", "bdev_rbd_create"]


def test_the_tables_cover_what_the_volume_backends_hand_out(tmp_path, monkeypatch):
    monkeypatch.setattr(rbd_backend, "import_ceph", lambda: (None, None))
    for backend in (file_backend.FileBackend(None, volume_dir=str(tmp_path)),
                    file_backend.FileBackend(None, volume_dir=str(tmp_path), shared=True),
                    rbd_backend.RbdBackend(None, pool="volumes"),
                    rbd_backend.RbdBackend(None, pool="volumes", cluster_name="ceph-1")):
        spec = backend.bdev_spec("volume-1")
        assert volume.checked_call(spec, volume.BDEV_CALLS, "spec") is spec
        for call in backend.bdev_prerequisites("volume-1"):
            assert volume.checked_call(call, volume.PREREQUISITE_CALLS, "req") is call
    # Every method in the tables is one the agent serves.
    named = set(volume.PREREQUISITE_CALLS)
    for create, calls in volume.BDEV_CALLS.items():
        named.update((create, calls.delete, calls.rescan))
    assert named <= set(agent_rpc.REGISTRY)
