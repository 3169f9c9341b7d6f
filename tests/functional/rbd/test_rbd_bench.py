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
    # Paired per round (one round: the ratio is its own median and range).
    assert rows[0][7].strip() == "1.00" and rows[0][8].strip() == "1.00 (1.00-1.00)"
    for r in rows[1:]:
        assert r[8].split()[0] == r[7].strip()
    # The target's cost per I/O: reactor busy time for both engine rows, CPU
    # seconds per million I/Os for the interrupt-mode vhost row.
    assert [r[9].strip() == "-" for r in rows] == [True, False, False]
    assert [r[10].strip() == "-" for r in rows] == [True, True, False]
    assert float(rows[2][10].split()[0]) > 0
    # The vhost run is a QEMU guest's profile, and says what it negotiated;
    # the header has the commit and the load average.
    assert "vhost: `--like-qemu " in text and "negotiated features 0x" in text
    assert "commit " in text and "load average" in text
