"""Cinder moving data itself, through os-brick, for file volumes of ours.

Real cinder code does the work (see tests/support/cinder_services.py): a
VolumeManager per backend (its generic revert to snapshot and its
``_copy_volume_data``, the data path of a host-assisted migration or
retype), the driver base class's backup device and attach, Cinder's posix
backup driver into a temp directory, os-brick's ``local`` connector and
``dd``.  Two file backends of ours run side by side on a real agent; a
volume is written the way a guest writes it (through a vhost-user-blk
controller) and read back the same way.  The rbd backend's runs are in
tests/functional/openstack/cinder_rbd (its Ceph cluster).
"""

import os
import warnings

import pytest

warnings.simplefilter("ignore", DeprecationWarning)

from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from tests.support import cinder_services  # noqa: E402
from tests.support.openstack_agent import running_agent  # noqa: E402

pytestmark = pytest.mark.timeout(300)
MiB = 1 << 20


@pytest.fixture(scope="module")
def agent():
    with running_agent() as agent:
        yield agent


@pytest.fixture(scope="module")
def client(agent):
    with agent.client() as c:
        yield c


@pytest.fixture(scope="module")
def managers(agent, tmp_path_factory):
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    backends = {name: {"spdk_vhost_agent_socket": agent.rpc_socket,
                       "spdk_vhost_volume_dir": str(tmp_path_factory.mktemp(name))}
                for name in ("spdk-a", "spdk-b")}
    db_path = tmp_path_factory.mktemp("db") / "cinder.sqlite"
    with pytest.MonkeyPatch.context() as mp, \
            cinder_services.database(fixture, db_path), \
            cinder_services.privileges_in_process(), \
            cinder_services.running_managers(fixture, mp, backends) as mgrs:
        yield mgrs
    fixture.cleanUp()


@pytest.fixture
def ctx():
    return cinder_services.request_context()


def test_backup_of_an_attached_written_volume_restores_the_same_bytes(
        client, managers, ctx, tmp_path):
    kind, seen = cinder_services.backup_and_restore(ctx, client, managers,
                                                    "spdk-a", "spdk-b", tmp_path)
    assert kind == ("local", "local")
    for expected, read in seen:
        assert read == expected
    assert os.listdir(tmp_path)  # the backup's objects


def test_generic_revert_to_snapshot(client, managers, ctx):
    seen, temps, left = cinder_services.revert_generic(ctx, client, managers, "spdk-a")
    for expected, read in seen:
        assert read == expected
    assert len(temps) == 1 and not left  # the temporary volume came and went
    volume_dir = managers["spdk-a"].driver.backend.volume_dir
    assert not os.listdir(volume_dir)


def test_host_assisted_migration_between_two_backends(client, managers, ctx):
    seen, dest = cinder_services.migrate_data(ctx, client, managers, "spdk-a", "spdk-b")
    for expected, read in seen:
        assert read == expected
    # Copied sparsely (the destination backend says sparse_copy_volume).
    path = managers["spdk-b"].driver.backend.path("volume-%s" % dest.id)
    assert os.stat(path).st_blocks * 512 < 64 * MiB
    cinder_services.delete_volume(managers, dest)
