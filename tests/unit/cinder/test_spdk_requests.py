"""Every request the Cinder driver sends keeps SPDK's parameter rules
(tests/support/spdk_rules.py), and so do the calls its connection info
hands to compute hosts: a volume's life on the file and rbd backends,
against the real agent service over the fake engine, as it is and posing
as SPDK (see tests/unit/test_spdk_requests.py)."""

import os
import uuid
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

from cinder import context  # noqa: E402
from cinder import objects  # noqa: E402
from cinder.tests.unit import fake_snapshot  # noqa: E402
from cinder.tests.unit import fake_volume  # noqa: E402
from cinder.volume import configuration  # noqa: E402
from cinder.volume import driver as cinder_driver  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from spdk_backend.cinder import driver  # noqa: E402
from spdk_backend.volume.backends import rbd as rbd_backend  # noqa: E402
from tests.support import fake_ceph  # noqa: E402
from tests.support import spdk_rules  # noqa: E402
from tests.support.spdk_requests import agent, short_tmp, target  # noqa: E402,F401 (fixtures)

objects.register_all()
BACKEND = "spdk-req"





@pytest.fixture
def make_driver(agent, monkeypatch):
    monkeypatch.setattr(rbd_backend, "import_ceph", fake_ceph.modules)
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    made = []

    def make(**options):
        config = configuration.Configuration(cinder_driver.volume_opts,
                                             config_group=BACKEND)
        drv = driver.SpdkVhostDriver(configuration=config, host="host1@%s" % BACKEND)
        fixture.config(group=BACKEND, spdk_vhost_agent_socket=agent.opts.rpc_socket,
                       spdk_vhost_agent_timeout=10, **options)
        drv.do_setup(None)
        drv.check_for_setup_error()
        made.append(drv)
        return drv

    yield make
    for drv in made:
        drv.client.close()
    fixture.cleanUp()


def _volume(ctx, size=1):
    return fake_volume.fake_volume_obj(ctx, size=size, id=str(uuid.uuid4()))


def _life_of_a_volume(drv, snapshots=True):
    """What Cinder asks of the driver for one volume; the calls each
    ``initialize_connection`` hands to the compute host."""
    ctx = context.get_admin_context()
    vol = _volume(ctx)
    drv.create_volume(vol)
    drv.create_export(ctx, vol, None)
    drv.ensure_export(ctx, vol)
    info = drv.initialize_connection(vol, {"host": "compute1", "vhost_user_blk": True})
    handed = [info["data"]["bdev"]] + info["data"]["bdev_requires"]
    drv.extend_volume(vol, 2)
    if snapshots:
        snap = fake_snapshot.fake_snapshot_obj(ctx, id=str(uuid.uuid4()), volume=vol,
                                               volume_size=2)
        drv.create_snapshot(snap)
        new = _volume(ctx, size=2)
        drv.create_volume_from_snapshot(new, snap)
        clone = _volume(ctx, size=2)
        drv.create_cloned_volume(clone, vol)
        drv.delete_snapshot(snap)
        for other in (new, clone):
            drv.delete_volume(other)
    drv.get_volume_stats(refresh=True)
    drv.terminate_connection(vol, {"host": "compute1"})
    drv.remove_export(ctx, vol)
    drv.delete_volume(vol)
    return [(c["method"], c["params"]) for c in handed]


def test_file_backend(make_driver, agent, target, short_tmp):
    voldir = os.path.join(short_tmp, "volumes")
    os.makedirs(voldir)
    drv = make_driver(spdk_vhost_volume_dir=voldir, spdk_vhost_volume_dir_shared=True)
    handed = _life_of_a_volume(drv)
    assert spdk_rules.check_requests(target.requests, target.extensions) == []
    assert agent.engine.bdevs == {}
    # The compute host's agent may be SPDK: its Nova driver drops ``shared``
    # there (connector.spdk_params), the one extension the call may carry.
    assert spdk_rules.check_requests(handed, extensions=True) == []
    assert handed[0][1]["shared"] is True
    assert any(p.get("shared") for p in target.sent("bdev_uring_create")) \
        is target.extensions


@pytest.mark.parametrize("cluster_name", ["", "ceph-1"])
def test_rbd_backend(make_driver, agent, target, cluster_name):
    drv = make_driver(spdk_vhost_volume_backend="rbd", spdk_vhost_rbd_pool="volumes",
                      spdk_vhost_rbd_user="cinder",
                      spdk_vhost_rbd_ceph_conf="/etc/ceph/ceph.conf",
                      spdk_vhost_rbd_keyring="/etc/ceph/cinder.keyring",
                      spdk_vhost_rbd_cluster_name=cluster_name)
    handed = _life_of_a_volume(drv, snapshots=False)
    assert spdk_rules.check_requests(target.requests, target.extensions) == []
    # SPDK's bdev_rbd_create, naming the cluster registered before it.
    assert spdk_rules.check_requests(handed, extensions=False) == []
    (create, params), (register, cluster) = handed
    assert (create, register) == ("bdev_rbd_create", "bdev_rbd_register_cluster")
    assert params["cluster_name"] == cluster["name"] == drv.backend.agent_cluster_name
    assert cluster_name in ("", cluster["name"])
    assert cluster == {"name": cluster["name"], "user_id": "cinder",
                       "config_file": "/etc/ceph/ceph.conf",
                       "key_file": "/etc/ceph/cinder.keyring"}
    assert list(agent.engine.clusters) == [cluster["name"]]
