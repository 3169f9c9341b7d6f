"""An rbd volume served by another host's agent from the connection info alone.

cinder-volume's host has its agent (the Cinder driver runs in its own
process, see ../cinder_rbd_side.py); the compute host has a second, fresh
agent that never heard of the volume or the cluster.  Nova's
``connect_volume`` must create the rbd bdev (and register the cluster it
names) there, and the data a guest writes through that host's controller
must land in the RBD image.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

import nova.conf  # noqa: E402
from nova import context  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.unit import fake_instance  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from spdk_backend.nova import volume  # noqa: E402
from tests.support import vhost_frontend as vf  # noqa: E402
from tests.support import vhost_io  # noqa: E402
from tests.support.openstack_agent import running_agent  # noqa: E402

pytestmark = pytest.mark.timeout(300)
objects.register_all()
CINDER_SIDE = pathlib.Path(__file__).resolve().parents[1] / "cinder_rbd_side.py"
MiB = 1 << 20


@pytest.fixture(scope="module")
def cinder_agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture(scope="module")
def compute_agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture
def conf(compute_agent):
    fixture = config_fixture.Config(nova.conf.CONF)
    fixture.setUp()
    fixture.config(group="spdk_vhost", agent_socket=compute_agent.rpc_socket,
                   agent_timeout=30)
    yield fixture
    fixture.cleanUp()


@pytest.fixture
def compute(compute_agent):
    with compute_agent.client() as c:
        yield c


def _instance():
    flavor = objects.Flavor(name="m1.vhost", memory_mb=256, vcpus=1, root_gb=0,
                            ephemeral_gb=0, swap=0, extra_specs={"hw:mem_page_size": "large"})
    inst = fake_instance.fake_instance_obj(context.get_admin_context(), flavor=flavor)
    inst.system_metadata = {}
    return inst


def cinder(action, agent, ceph_cluster, volume_id, **options):
    opts = {"spdk_vhost_agent_socket": agent.rpc_socket,
            "spdk_vhost_rbd_pool": ceph_cluster.pool,
            "spdk_vhost_rbd_ceph_conf": ceph_cluster.conf,
            "spdk_vhost_rbd_keyring": ceph_cluster.keyring}
    opts.update(options)
    proc = subprocess.run([sys.executable, str(CINDER_SIDE), action, json.dumps(opts),
                           volume_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-5000:]
    return json.loads(proc.stdout) if action == "create" else None


def _image_bytes(ceph_cluster, image, offset, length):
    workdir = tempfile.mkdtemp(prefix="sbn-", dir="/tmp")
    try:
        path = os.path.join(workdir, "export")
        ceph_cluster.rbd("export", "--no-progress", "%s/%s" % (ceph_cluster.pool, image),
                         path)
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _bdev_names(client):
    return {b["name"] for b in client.call("bdev_get_bdevs")}


def _attach_write_detach(drv, info, compute, ceph_cluster):
    """connect_volume on the compute host, write as a guest, check the image."""
    data = info["data"]
    bdev = data["bdev_name"]
    assert bdev not in _bdev_names(compute)  # a host that never served it
    inst = _instance()
    drv.connect_volume(info, inst)
    try:
        assert data["bdev_created"] is True
        (served,) = compute.call("bdev_get_bdevs", name=bdev)
        rbd = served["driver_specific"]["rbd"]
        assert (rbd["pool_name"], rbd["rbd_name"]) == (data["rbd"]["pool"],
                                                       data["rbd"]["image"])
        payload, off = os.urandom(128 * 1024), 5 * MiB
        with vf.Frontend(data["vhost_socket"], gpa=0, size=1 << 20, timeout=30.0) as fe:
            fe.connect()
            vhost_io.write(fe, off, payload)
            assert vhost_io.read(fe, off, len(payload)) == payload
    finally:
        drv.disconnect_volume(info, inst)
    # What the compute host created for the attach is gone with it.
    assert bdev not in _bdev_names(compute)
    assert not compute.call("vhost_get_controllers")
    assert _image_bytes(ceph_cluster, data["rbd"]["image"], off, len(payload)) == payload


def test_compute_host_serves_the_image_from_the_connection_info(
        conf, cinder_agent, compute, ceph_cluster):
    vol_id = str(uuid.uuid4())
    info = cinder("create", cinder_agent, ceph_cluster, vol_id)
    local = tempfile.mkdtemp(prefix="sbn-etc-", dir="/tmp")
    drv = volume.LibvirtVhostUserBlkVolumeDriver(host=None)
    try:
        assert info["data"]["bdev"]["method"] == "bdev_rbd_create"
        _attach_write_detach(drv, info, compute, ceph_cluster)

        # Another compute host keeps its Ceph files elsewhere: cinder-volume's
        # paths do not exist there, [spdk_vhost] names this host's own.  It
        # has not registered the cluster yet.
        params = info["data"]["bdev_requires"][0]["params"]
        params["config_file"] = "/nonexistent/ceph.conf"
        params["key_file"] = "/nonexistent/keyring"
        compute.call("bdev_rbd_unregister_cluster", name=params["name"])
        conf.config(group="spdk_vhost",
                    rbd_ceph_conf=shutil.copy(ceph_cluster.conf, local),
                    rbd_keyring=shutil.copy(ceph_cluster.keyring, local))
        _attach_write_detach(drv, info, compute, ceph_cluster)
    finally:
        cinder("delete", cinder_agent, ceph_cluster, vol_id)
        shutil.rmtree(local, ignore_errors=True)


def test_compute_host_registers_the_named_cluster(conf, cinder_agent, compute,
                                                   ceph_cluster):
    vol_id = str(uuid.uuid4())
    info = cinder("create", cinder_agent, ceph_cluster, vol_id,
                  spdk_vhost_rbd_cluster_name="ceph-e2e")
    drv = volume.LibvirtVhostUserBlkVolumeDriver(host=None)
    try:
        assert "ceph-e2e" not in {c["cluster_name"]
                                  for c in compute.call("bdev_rbd_get_clusters_info")}
        _attach_write_detach(drv, info, compute, ceph_cluster)
        assert "ceph-e2e" in {c["cluster_name"]
                              for c in compute.call("bdev_rbd_get_clusters_info")}
        # A second attach finds the cluster registered: still fine.
        inst = _instance()
        drv.connect_volume(info, inst)
        (served,) = compute.call("bdev_get_bdevs", name=info["data"]["bdev_name"])
        assert served["driver_specific"]["rbd"]["cluster_name"] == "ceph-e2e"
        drv.disconnect_volume(info, inst)
    finally:
        cinder("delete", cinder_agent, ceph_cluster, vol_id,
               spdk_vhost_rbd_cluster_name="ceph-e2e")
        for agent_client in (compute,):
            try:
                agent_client.call("bdev_rbd_unregister_cluster", name="ceph-e2e")
            except Exception:
                pass
