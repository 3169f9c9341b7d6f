"""Fixtures shared by the end-to-end tests (module scope: one set per test
file; the Ceph cluster is one for the whole session)."""

import libvirt
import pytest

from tests.support import ceph
from tests.support import guest
from tests.support import libvirt_domain as lvd


@pytest.fixture(scope="module")
def image():
    """The busybox guest (Debian's cloud kernel + initramfs), cached on disk."""
    return guest.build_guest_image()


@pytest.fixture(scope="module")
def daemons():
    """libvirtd and virtlogd, started only when none answers (and then stopped)."""
    d = lvd.ensure_libvirtd()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def conn(daemons):
    c = libvirt.open(lvd.URI)
    yield c
    c.close()


@pytest.fixture(scope="session")
def cluster():
    """A single-node Ceph cluster (tests/support/ceph.py), shared by the
    e2e tests that use one: starting it takes longer than most tests."""
    reason = ceph.available()
    if reason:
        pytest.fail(reason)
    with ceph.CephCluster() as c:
        yield c
