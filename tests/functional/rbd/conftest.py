"""One real Ceph cluster (tests/support/ceph.py) for every rbd functional test."""

import itertools
import shutil
import tempfile

import pytest

from tests.support import ceph

_ids = itertools.count()


@pytest.fixture(scope="session")
def ceph_cluster():
    # With a mgr: the volume backend reports the cluster's capacity.
    with ceph.running_cluster(with_mgr=True) as cluster:
        yield cluster


@pytest.fixture
def rbd_image(ceph_cluster):
    """A fresh 64 MiB image in the cluster's pool; its name ("pool/image" is not)."""
    name = "img%d" % next(_ids)
    ceph_cluster.rbd("create", "--size", "64M", "%s/%s" % (ceph_cluster.pool, name))
    yield name
    ceph_cluster.rbd("rm", "--no-progress", "%s/%s" % (ceph_cluster.pool, name),
                     timeout=120)


@pytest.fixture
def base_dir():
    """A short temp dir (unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="sbr-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
