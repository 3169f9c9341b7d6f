"""Every request the Nova volume driver sends keeps SPDK's parameter rules
(tests/support/spdk_rules.py): connect, extend and disconnect of file and
rbd volumes, against the real agent service over the fake engine, as it is
and posing as SPDK (see tests/unit/test_spdk_requests.py)."""

import os
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
from spdk_backend import utils  # noqa: E402
from spdk_backend.nova import volume  # noqa: E402
from tests.support import spdk_rules  # noqa: E402
from tests.support.spdk_requests import agent, short_tmp, target  # noqa: E402,F401 (fixtures)

objects.register_all()
MiB = 1 << 20





@pytest.fixture
def drv(agent, monkeypatch):
    fixture = config_fixture.Config(nova.conf.CONF)
    fixture.setUp()
    fixture.config(group="spdk_vhost", agent_socket=agent.opts.rpc_socket,
                   agent_timeout=10, rbd_keyring="/etc/ceph/nova.keyring")
    monkeypatch.setattr(volume, "_small_page_kib", lambda: 4)
    monkeypatch.setattr(utils, "_sleep", lambda seconds: None)
    yield volume.LibvirtVhostUserBlkVolumeDriver(host=None)
    fixture.cleanUp()


def _instance():
    flavor = objects.Flavor(name="m1.vhost", memory_mb=256, vcpus=1, root_gb=0,
                            ephemeral_gb=0, swap=0,
                            extra_specs={"hw:mem_page_size": "large"})
    inst = fake_instance.fake_instance_obj(context.get_admin_context(), flavor=flavor)
    inst.system_metadata = {}
    return inst


def _file_info(short_tmp):
    vol_id = str(uuid.uuid4())
    name = "volume-%s" % vol_id
    path = os.path.join(short_tmp, name)
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
    # As the Cinder driver's file backend hands it out, shared storage.
    spec = {"method": "bdev_uring_create",
            "params": {"name": name, "filename": path, "block_size": 512, "shared": True}}
    return {"driver_volume_type": "vhost_user_blk", "serial": vol_id,
            "data": {"volume_id": vol_id, "name": name, "bdev_name": name, "bdev": spec,
                     "bdev_requires": [], "block_size": 512, "num_queues": 2,
                     "access_mode": "rw"}}


def _rbd_info(legacy=False):
    vol_id = str(uuid.uuid4())
    name = "volume-%s" % vol_id
    params = {"name": name, "pool_name": "volumes", "rbd_name": name, "block_size": 512}
    requires = []
    if legacy:
        # Before the Cinder driver registered clusters.
        params.update(user_id="cinder", config_file="/etc/ceph/ceph.conf",
                      key_file="/etc/ceph/cinder.keyring")
    else:
        params["cluster_name"] = "ceph-1"
        requires = [{"method": "bdev_rbd_register_cluster",
                     "params": {"name": "ceph-1", "user_id": "cinder",
                                "config_file": "/etc/ceph/ceph.conf",
                                "key_file": "/etc/ceph/cinder.keyring"}}]
    return {"driver_volume_type": "vhost_user_blk", "serial": vol_id,
            "data": {"volume_id": vol_id, "name": name, "bdev_name": name,
                     "bdev": {"method": "bdev_rbd_create", "params": params},
                     "bdev_requires": requires, "block_size": 512, "num_queues": 1,
                     "access_mode": "ro"}}


def test_nova_driver_requests(drv, agent, target, short_tmp):
    inst = _instance()
    infos = [_file_info(short_tmp), _rbd_info(), _rbd_info(legacy=True)]
    for info in infos:
        drv.connect_volume(info, inst)
        assert info["data"]["bdev_created"] is True
        drv.connect_volume(info, inst)          # a retried attach adopts it all
        drv.extend_volume(info, inst, 8 * MiB)
    # A guest whose QEMU still holds its socket: forced where the agent can.
    busy = infos[0]["data"]["vhost_ctrlr"]
    agent.engine.busy_ctrlrs.add(busy)
    if target.extensions:
        drv.disconnect_volume(infos[0], inst, force=True)
    else:
        with pytest.raises(nova_exception.InternalError):
            drv.disconnect_volume(infos[0], inst, force=True)
        agent.engine.busy_ctrlrs.discard(busy)
        drv.disconnect_volume(infos[0], inst)
    for info in infos[1:]:
        drv.disconnect_volume(info, inst)
    assert agent.engine.ctrlrs == {} and agent.engine.bdevs == {}

    assert spdk_rules.check_requests(target.requests, target.extensions) == []
    # What only our agent gets, it got: the queues, the shared lock, force.
    sent = {m: [p for p in target.sent(m)] for m in set(target.methods())}
    assert any("max_queues" in p for p in sent["vhost_create_blk_controller"]) \
        is target.extensions
    assert any(p.get("shared") for p in sent["bdev_uring_create"]) is target.extensions
    assert any(p.get("force") for p in sent["vhost_delete_controller"]) \
        is target.extensions
    # Every rbd bdev names a registered cluster; the legacy one's is named
    # after its (this host's) files.
    legacy = connector.rbd_cluster_name(user_id="cinder",
                                        config_file="/etc/ceph/ceph.conf",
                                        key_file="/etc/ceph/nova.keyring")
    assert [p["cluster_name"] for p in sent["bdev_rbd_create"]] == ["ceph-1", legacy]
    assert set(agent.engine.clusters) == {"ceph-1", legacy}
    assert all(c["key_file"] == "/etc/ceph/nova.keyring"
               for c in agent.engine.clusters.values())
