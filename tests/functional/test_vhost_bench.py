"""Smoke test of bench/vhost_bench.py: every target runs, the table adds up."""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.support import qemu_features

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def _tables(stdout):
    """The markdown tables of the output: each a list of rows of cells."""
    tables, cur = [], None
    for line in stdout.splitlines():
        if line.startswith("| ") and cur is None:
            cur = []  # the header
        elif line.startswith("|---"):
            continue
        elif line.startswith("| "):
            cur.append(line.split("|")[1:-1])
        elif cur is not None:
            tables.append(cur)
            cur = None
    if cur is not None:
        tables.append(cur)
    return tables


def test_vhost_bench_table(native_tools, tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "vhost_bench.py"), "--time",
         "0.3", "--rounds", "2", "--qd", "1", "4", "--size-mb", "8",
         "--warmup", "0", "--engine", "null",
         "--initiator", str(native_tools / "vhost_initiator"),
         "--json-out", str(tmp_path / "samples.json")],
        capture_output=True, text=True, timeout=240, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    tables = _tables(out.stdout)
    assert len(tables) == 2, out.stdout
    negotiated, rows = tables
    # What each target negotiated: the --like-qemu profile of the installed
    # QEMU (interrupt mode), with an inflight region only where offered.
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True).stdout.split("version ")[1].split(".")[:2]
    rec = qemu_features.load()[".".join(version)]
    neg = {r[0].strip(): [c.strip() for c in r[1:]] for r in negotiated}
    assert set(neg) == {"qsd-null", "qsd-uring", "engine-null"}
    for name, (feat, proto, intr, infl) in neg.items():
        assert int(feat, 16) & ~rec["features"] == 0, (name, feat)
        assert int(proto, 16) & ~rec["protocol_features"] == 0, (name, proto)
        assert intr == "True"
    assert int(neg["engine-null"][1], 16) == rec["protocol_features"]
    assert neg["engine-null"][3] == "True"

    names = [(r[0].strip(), int(r[1])) for r in rows]
    assert names == [(t, qd) for qd in (1, 4)
                     for t in ("qsd-null", "qsd-uring", "engine-null")]
    for r in rows:
        assert float(r[2].split()[0]) > 0          # IOPS median
    # The first target is the baseline of the paired ratio columns.
    assert [r[6].strip() for r in rows[::3]] == ["1.00 1.00"] * 2
    assert [r[7].strip() for r in rows[::3]] == ["1.00 (1.00-1.00)"] * 2
    for r in rows:
        per_round = [float(x) for x in r[6].split()]
        med, rng = r[7].split()
        lo, hi = (float(x) for x in rng.strip("()").split("-"))
        assert len(per_round) == 2 and (min(per_round), max(per_round)) == (lo, hi)
        assert lo <= float(med) <= hi
        # Reactor busy time per I/O for our engine only; CPU per I/O for all
        # (interrupt mode).
        engine = r[0].strip().startswith("engine-")
        assert (r[8].strip() != "-") == engine, r
        if engine:
            assert float(r[8].split()[0]) > 0
        assert float(r[9].split()[0]) >= 0
        # Notifications per I/O, every target (interrupt mode: calls too),
        # and how often the initiator blocked waiting for a call.
        assert float(r[10].split()[0]) > 0, r
        assert float(r[11].split()[0]) >= 0, r
        assert float(r[12].split()[0]) >= 0, r
    # Which qemu-storage-daemon (each stack ships its own) and which commit.
    (prov,) = [line for line in out.stdout.splitlines() if line.startswith("commit ")]
    qsd = subprocess.run(["qemu-storage-daemon", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    assert qsd in prov and "load average" in prov
    assert (tmp_path / "samples.json").stat().st_size > 0


def test_engine_makes_fewer_calls_than_completions_at_qd32(native_tools, tmp_path):
    """With EVENT_IDX (the --like-qemu profile) at QD 32 the engine publishes
    the completions it finds in one poll with one used index store and makes
    one call decision for them, so the initiator counts fewer calls than
    completions; with and without an inflight region.  A count comparison,
    not a timing: on a loaded machine the batches only get larger."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "vhost_bench.py"), "--time",
         "0.5", "--rounds", "1", "--qd", "32", "--size-mb", "8",
         "--warmup", "0", "--no-builtin", "--engine", "null",
         "--compare-inflight",
         "--initiator", str(native_tools / "vhost_initiator"),
         "--json-out", str(tmp_path / "samples.json")],
        capture_output=True, text=True, timeout=240, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    negotiated, rows = _tables(out.stdout)
    neg = {r[0].strip(): [c.strip() for c in r[1:]] for r in negotiated}
    assert set(neg) == {"engine-null", "engine-null/no-inflight"}
    for name, (feat, _proto, intr, infl) in neg.items():
        assert int(feat, 16) & (1 << 29), (name, feat)     # EVENT_IDX
        assert intr == "True"
        assert infl == ("True" if name == "engine-null" else "False"), (name, infl)
    samples = json.loads((tmp_path / "samples.json").read_text())
    for name in ("engine-null", "engine-null/no-inflight"):
        (res,) = samples["%s/qd32" % name]
        assert res["ios"] > 1000, res
        assert 0 < res["calls"] < res["ios"], (name, res)
        assert res["calls_per_io"] == res["calls"] / res["ios"]
    assert [r[0].strip() for r in rows] == ["engine-null", "engine-null/no-inflight"]
    for r in rows:
        assert float(r[10].split()[0]) < 1, r
