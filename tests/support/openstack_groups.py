"""Cinder and Nova cannot be imported in one Python process (both register
``default_availability_zone`` on oslo.config's global CONF), so the tests that
import one of them are collected only in a pytest process started for that
group (see tests/functional/openstack/test_openstack_groups.py).
"""

import os

ENV = "SPDK_BACKEND_OPENSTACK_GROUP"


def collect_ignore_unless(group):
    """``collect_ignore_glob`` for a conftest: everything unless ``group`` runs."""
    return [] if os.environ.get(ENV) == group else ["*"]
