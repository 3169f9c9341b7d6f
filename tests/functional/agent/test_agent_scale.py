"""1000 bdevs and 1000 controllers through the client, against a real agent
(the same run as bench/agent_rpc_scale.py, whose numbers are in
bench/RESULTS.md)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_1000_bdevs_and_controllers():
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "agent_rpc_scale.py"),
                        "--count", "1000", "--json"], capture_output=True, text=True,
                       timeout=1100, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    phases = result["phases"]
    for name in ("bdev_malloc_create", "vhost_create_blk_controller",
                 "vhost_delete_controller", "bdev_malloc_delete"):
        assert phases[name]["calls"] == 1000
        # Each call, state write included, stays interactive at this scale.
        assert phases[name]["p99_ms"] < 1000, (name, phases[name])
    assert phases["bdev_get_bdevs (all)"]["total_s"] < 10
    assert phases["vhost_get_controllers (all)"]["total_s"] < 10
    assert phases["restart with full state, to the first answer"]["total_s"] < 120
