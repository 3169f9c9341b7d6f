"""Run the Cinder and the Nova tests, each group in its own pytest process.

The groups need the ``openstack`` extra (``pip install -e '.[test,openstack]'``).
"""

import os
import pathlib
import subprocess
import sys

import pytest

from tests.support import openstack_groups

ROOT = pathlib.Path(__file__).resolve().parents[3]
GROUPS = {
    "cinder": ["tests/unit/cinder", "tests/functional/openstack/cinder_rbd",
               "tests/functional/openstack/cinder_data"],
    "nova": ["tests/unit/nova", "tests/functional/openstack/nova_e2e",
             "tests/functional/openstack/nova_rbd",
             "tests/functional/openstack/nova_migration"],
}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group(group):
    env = dict(os.environ, **{openstack_groups.ENV: group})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-W", "ignore::DeprecationWarning"] + GROUPS[group],
        cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=840)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out[-20000:]
    assert " passed" in out and " skipped" not in out, out[-5000:]
