"""Smoke test of bench/rbd_bench.py: its own cluster, every target runs, the table adds up."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.timeout(400)


@pytest.mark.parametrize("layout", ["split", "float"])
def test_rbd_bench_table(native_tools, tmp_path, layout):
    if layout == "split" and not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("the split layout needs CPUs 0 and 1")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rbd_bench.py"), "--seconds", "1",
         "--rounds", "1", "--size-mb", "32", "--workload", "randread:4096:4",
         "--layout", layout, "--spin-us", "1"],
        capture_output=True, text=True, timeout=360, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout[out.stdout.index("## Ceph RBD"):]
    assert "layout %s" % layout in text
    rows = [line.split("|")[1:-1] for line in text.splitlines()
            if line.startswith("| randread")]
    assert [r[1].strip() for r in rows] == ["fio-rbd", "engine", "vhost"]
    for r in rows:
        assert float(r[2]) > 0                       # IOPS
        lo, hi = (float(x) for x in r[3].split("-"))
        assert lo <= float(r[2]) <= hi               # one round: all equal
    assert rows[0][6].strip() == "-"
    for r in rows[1:]:
        assert r[6].strip().endswith("%")
