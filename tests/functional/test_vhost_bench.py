"""Smoke test of bench/vhost_bench.py: every target runs, the table adds up."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def test_vhost_bench_table(native_tools, tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "vhost_bench.py"), "--time",
         "0.3", "--rounds", "2", "--qd", "1", "4", "--size-mb", "8",
         "--warmup", "0", "--engine", "null",
         "--initiator", str(native_tools / "vhost_initiator"),
         "--json-out", str(tmp_path / "samples.json")],
        capture_output=True, text=True, timeout=240, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| target")]
    names = [(r[0].strip(), int(r[1])) for r in rows]
    assert names == [(t, qd) for qd in (1, 4)
                     for t in ("qsd-null", "qsd-uring", "engine-null")]
    for r in rows:
        assert float(r[2].split()[0]) > 0          # IOPS median
    # The first target is the baseline of the paired ratio column.
    assert [r[6].strip() for r in rows[::3]] == ["1.00 (1.00-1.00)"] * 2
    for r in rows:
        med, rng = r[6].split()
        lo, hi = (float(x) for x in rng.strip("()").split("-"))
        assert lo <= float(med) <= hi
    # Which qemu-storage-daemon (each stack ships its own) and which commit.
    (prov,) = [line for line in out.stdout.splitlines() if line.startswith("commit ")]
    qsd = subprocess.run(["qemu-storage-daemon", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    assert qsd in prov and "load average" in prov
    assert (tmp_path / "samples.json").stat().st_size > 0
