import pytest

from tests.support import ceph
from tests.support import openstack_groups

# Imports nova: collected only in the nova group's own process.
collect_ignore_glob = openstack_groups.collect_ignore_unless("nova")


@pytest.fixture(scope="module")
def ceph_cluster():
    with ceph.running_cluster() as cluster:
        yield cluster
