"""bench/vhost_bench.py without targets: the paired-ratio table and --pair's checks."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "vhost_bench.py"


def _run(iops, p50, cpu):
    return {"iops": iops, "p50": p50, "cpu_s_per_mio": cpu}


def test_pairs_are_per_round_ratios(vb, capsys):
    samples = {
        ("a", 32): [_run(200, 10, 1.0), _run(90, 30, 2.0), _run(300, 5, None)],
        ("b", 32): [_run(100, 20, 2.0), _run(100, 10, 1.0), _run(100, 10, 1.0)],
    }
    vb.print_pairs([("a", "b")], [32], samples)
    row = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith("| a / b")]
    # Round by round, not median over median: 2.00, 0.90, 3.00.
    assert row == ["| a / b | 32 | 2.00 0.90 3.00 | 2.00 (0.90-3.00) | "
                   "0.50 (0.50-3.00) | 1.25 (0.50-2.00) |"]


def test_pair_names_must_be_targets():
    out = subprocess.run([sys.executable, str(SCRIPT), "--no-builtin", "--engine", "null",
                          "--pair", "engine-null/qsd-null", "--rounds", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--pair engine-null/qsd-null: two of engine-null" in out.stderr
