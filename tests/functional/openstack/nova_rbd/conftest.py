import pytest

from tests.support import ceph
from tests.support import openstack_groups

# Imports nova: collected only in the nova group's own process.
collect_ignore_glob = openstack_groups.collect_ignore_unless("nova")


@pytest.fixture(scope="module")
def ceph_cluster():
    reason = ceph.available()
    if reason:
        pytest.fail(reason)  # CI installs Ceph: a missing one is a broken setup
    with ceph.CephCluster() as cluster:
        yield cluster
