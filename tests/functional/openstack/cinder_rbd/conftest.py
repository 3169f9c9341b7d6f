import shutil
import tempfile

import pytest

from tests.support import ceph
from tests.support import openstack_groups

# Imports cinder: collected only in the cinder group's own process.
collect_ignore_glob = openstack_groups.collect_ignore_unless("cinder")


@pytest.fixture(scope="module")
def ceph_cluster():
    with ceph.running_cluster() as cluster:
        yield cluster


@pytest.fixture
def short_tmp():
    """A short temp dir (unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="sbc-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
